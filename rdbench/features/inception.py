"""``inception``: clean-fid's Inception-v3 features (2048-d pool3), the FID default.

The weights file ``inception-2015-12-05.pt`` is a TorchScript archive (NVIDIA's port of the
TF FID Inception used by StyleGAN2-ADA and clean-fid). TorchScript archives are not pickles:
``torch.jit.load`` -- what clean-fid itself calls -- deserialises the graph and tensors without
running arbitrary Python, so it is the accepted loader for this one file. The file is found
through :func:`rdbench.hub.resolve` (argument, ``RDBENCH_FILE_INCEPTION_2015_12_05``, cache,
download) and then handed to clean-fid's own ``InceptionV3W`` wrapper, so features equal
clean-fid's for the same pixels.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from rdbench import hub
from rdbench import weights as weights_registry
from rdbench.errors import RdbenchError
from rdbench.features.base import EXTRACTORS, FeatureExtractor, Preprocessor

INCEPTION_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "scd")
_EXPECTED_NAME = "inception-2015-12-05.pt"
_MODES = ("clean", "legacy_tensorflow", "legacy_pytorch")


def _load_inception_w(path: Path, resize_inside: bool) -> torch.nn.Module:
    """clean-fid's ``InceptionV3W`` on ``path`` (it wants a folder holding the expected name)."""
    from cleanfid.inception_torchscript import InceptionV3W

    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="rdbench-incep-") as tmp:
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", FutureWarning)
        folder = path.parent
        if path.name != _EXPECTED_NAME:
            folder = Path(tmp)
            try:
                os.symlink(path.resolve(), folder / _EXPECTED_NAME)
            except OSError:  # pragma: no cover - filesystems without symlinks
                shutil.copyfile(path, folder / _EXPECTED_NAME)
        return InceptionV3W(str(folder), download=False, resize_inside=resize_inside)


class InceptionExtractor(FeatureExtractor):
    """clean-fid's TorchScript Inception-v3; input 299x299 in [0, 255]; 2048-d features.

    ``resize_mode``: ``clean`` (default), ``legacy_tensorflow`` (network resizes inside) or
    ``legacy_pytorch`` (torch bilinear). Note: clean-fid's own ``legacy_pytorch`` mode also
    swaps the network for pytorch-fid's port; here the TorchScript network is kept.
    """

    name = "inception"
    input_size = 299
    default_metrics = INCEPTION_METRICS

    def __init__(self, path: Path, sha256: str, resize_mode: str, device: torch.device) -> None:
        if resize_mode not in _MODES:
            raise RdbenchError(
                f"inception: resize_mode {resize_mode!r} is not supported; use one of {_MODES}"
            )
        try:
            self.model = _load_inception_w(path, resize_inside=resize_mode == "legacy_tensorflow")
        except Exception as exc:  # noqa: BLE001 - a bad file is the user's to fix
            raise RdbenchError(
                f"inception: cannot load TorchScript weights from {str(path)!r}: {exc}"
            ) from None
        self.model.eval().requires_grad_(False)
        self.resize_mode = resize_mode
        self.preprocessor = Preprocessor(resize_mode, self.input_size)
        self.id = f"inception-2015-12-05:{sha256[:16]}"
        self.device = torch.device("cpu")
        self.dim = self._probe_dim()
        self.to(device)

    def _probe_dim(self) -> int:
        with torch.inference_mode():
            out = self.model(torch.zeros(1, 3, self.input_size, self.input_size))
        return int(out.shape[1])

    def to(self, device: str | torch.device) -> InceptionExtractor:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """clean-fid ``InceptionV3W.forward``: ``(x - 128) / 128`` then pool3 features."""
        return self.model(batch.to(self.device)).float()


@EXTRACTORS.register("inception")
def load_inception(
    *, device: torch.device, weights: str | None = None, resize_mode: str = "clean"
) -> InceptionExtractor:
    """clean-fid's Inception; ``weights`` overrides the location of ``inception-2015-12-05.pt``."""
    found = hub.resolve(weights_registry.INCEPTION, local_path=weights)
    return InceptionExtractor(found.path, found.sha256, resize_mode, device)
