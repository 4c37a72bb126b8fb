"""``dinov2``: DINOv2 CLS embeddings through transformers' ``Dinov2Model``.

Features are ``pooler_output``: the CLS token after the final layer norm (what DINOv2's own
``forward_features()["x_norm_clstoken"]`` returns, the representation used for FD_DINOv2 by
Stein et al. 2023), not L2-normalised. Preprocessing follows the repository's
``preprocessor_config.json`` (``BitImageProcessor``): bicubic shorter side to 256, center crop
224 (resize mode ``hf_resize_center_crop``), ``/ 255``, ImageNet mean/std. The folder is found through
:func:`rdbench.hub.resolve_folder` (argument, ``RDBENCH_FILE_DINOV2_BASE``, cache, Hub).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from rdbench import hub
from rdbench import weights as weights_registry
from rdbench.errors import RdbenchError
from rdbench.features.base import EXTRACTORS, NormalizedExtractor, Preprocessor

DINOV2_METRICS = ("fid", "precision", "recall", "density", "coverage", "vendi", "scd")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _processor_config(folder: Path) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    try:
        cfg = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RdbenchError(f"dinov2: {path} is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise RdbenchError(f"dinov2: {path} must hold a JSON object")
    size = cfg.get("size", {"shortest_edge": 256})
    crop = cfg.get("crop_size", {"height": 224, "width": 224})
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    crop_size = crop.get("height") if isinstance(crop, dict) else crop
    if not shortest or not crop_size:
        raise RdbenchError(f"dinov2: unsupported preprocessor config in {path}: {cfg}")
    return {
        "resize_to": int(shortest),
        "crop": int(crop_size),
        "mean": tuple(cfg.get("image_mean", IMAGENET_MEAN)),
        "std": tuple(cfg.get("image_std", IMAGENET_STD)),
    }


def _weights_digest(folder: Path) -> str:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise RdbenchError(f"dinov2: no *.safetensors (or *.bin) weights in {str(folder)!r}")
    digest = hashlib.sha256()
    for f in files:
        digest.update(hub.sha256_file(f).encode())
    return digest.hexdigest()


class Dinov2Extractor(NormalizedExtractor):
    """transformers ``Dinov2Model``; features = ``pooler_output`` (layer-normed CLS token)."""

    name = "dinov2"
    resize_mode = "hf_resize_center_crop"
    default_metrics = DINOV2_METRICS

    def __init__(self, folder: Path, device: torch.device) -> None:
        from transformers import Dinov2Model

        cfg = _processor_config(folder)
        digest = _weights_digest(folder)
        try:
            self.model = Dinov2Model.from_pretrained(str(folder), use_safetensors=None)
        except Exception as exc:  # noqa: BLE001 - a bad folder is the user's to fix
            raise RdbenchError(
                f"dinov2: cannot load a Dinov2Model from {str(folder)!r}: {exc}"
            ) from None
        self.model.eval().requires_grad_(False)
        self.input_size = cfg["crop"]
        self.preprocessor = Preprocessor(self.resize_mode, cfg["crop"], cfg["resize_to"])
        self.set_normalization(cfg["mean"], cfg["std"])
        # the id (and so the feature cache) covers the weights, the model config and the
        # preprocessing: a changed config.json or mean/std is another extractor
        config = (
            (folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b""
        )
        spec = hashlib.sha256(
            digest.encode() + config + json.dumps(cfg, sort_keys=True, default=str).encode()
        ).hexdigest()
        self.id = f"dinov2:{folder.name}:{spec[:16]}"
        self.dim = int(self.model.config.hidden_size)
        self.to(device)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``pooler_output`` of ``((x / 255) - mean) / std``."""
        x = self.normalize(batch)
        return self.model(pixel_values=x).pooler_output.float()


@EXTRACTORS.register("dinov2")
def load_dinov2(*, device: torch.device, weights: str | None = None) -> Dinov2Extractor:
    """DINOv2 ViT-B/14; ``weights`` is a local ``save_pretrained`` folder override."""
    folder = hub.resolve_folder(weights_registry.DINOV2_BASE, local_path=weights)
    return Dinov2Extractor(Path(folder), device)
