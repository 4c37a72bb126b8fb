"""The feature-extractor interface and its registry.

An extractor turns decoded RGB images into ``N x dim`` float32 features. It is split in two:
:class:`Preprocessor` (CPU, picklable, runs in DataLoader workers: resize with the named mode,
then a CHW float tensor with values in [0, 255]) and :meth:`FeatureExtractor.forward` (batched
model call on the extractor's device; model-specific normalisation happens there).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rdbench.devices import resolve_device
from rdbench.errors import RdbenchError
from rdbench.features.resize import RESIZE_MODES, Resizer, make_resizer
from rdbench.registry import Registry

# Bump when the stored feature format or any preprocessing semantics change: old cache
# entries then live in another namespace and are never mixed with new ones.
FEATURE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Preprocessor:
    """PIL RGB image -> ``3 x S x S`` float32 tensor in [0, 255], via resize mode ``mode``.

    The tensor conversion copies clean-fid's ``ResizeDataset``: a float32 resize result is
    transposed as is; a uint8 one (``legacy_tensorflow``) goes through ``ToTensor() * 255``.
    """

    mode: str
    size: int
    resize_to: int | None = None
    _fn: list[Resizer] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        RESIZE_MODES.get(self.mode)  # fail early on an unknown mode

    @property
    def tag(self) -> str:
        """A string naming the exact pixel pipeline, part of the feature-cache key."""
        extra = f"/{self.resize_to}" if self.resize_to else ""
        return f"{self.mode}@{self.size}{extra}"

    def resize(self, image: Any) -> np.ndarray:
        """Resized HWC array (float32, or uint8 for ``legacy_tensorflow``)."""
        if not self._fn:  # built lazily so that the object pickles into spawned workers
            self._fn.append(make_resizer(self.mode, self.size, self.resize_to))
        return self._fn[0](np.asarray(image.convert("RGB"), dtype=np.uint8))

    def __call__(self, image: Any) -> torch.Tensor:
        x = self.resize(image)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        if x.dtype == np.uint8:
            return t.float().div(255).mul(255)  # == torchvision ToTensor()(x) * 255
        return t.float()

    def __getstate__(self) -> dict[str, Any]:
        return {"mode": self.mode, "size": self.size, "resize_to": self.resize_to}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_fn", [])


class FeatureExtractor(abc.ABC):
    """Base class: a model that maps preprocessed image batches to ``N x dim`` features.

    Attributes every extractor sets: ``name`` (registry name), ``id`` (unique: model,
    pretrained tag and a weights sha256 prefix; part of the cache key), ``input_size``,
    ``resize_mode``, ``dim``, ``default_metrics`` (metrics it serves by default),
    ``preprocessor`` and ``device``.
    """

    name: str
    id: str
    input_size: int
    resize_mode: str
    dim: int
    default_metrics: tuple[str, ...]
    preprocessor: Preprocessor
    device: torch.device

    def preprocess(self, image: Any) -> torch.Tensor:
        """CPU preprocessing of one PIL image (what DataLoader workers run)."""
        return self.preprocessor(image)

    @abc.abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``N x 3 x S x S`` float tensor in [0, 255] -> ``N x dim`` float32 features."""

    def to(self, device: str | torch.device) -> FeatureExtractor:
        """Move the model to ``device`` (subclasses move their modules)."""
        self.device = torch.device(device)
        return self

    @property
    def cache_namespace(self) -> str:
        """What a cached feature row depends on besides the image bytes."""
        return f"{self.id}|{self.preprocessor.tag}|v{FEATURE_FORMAT_VERSION}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.preprocessor.tag} dim={self.dim}>"


class NormalizedExtractor(FeatureExtractor):
    """An extractor whose ``model`` takes ``((x / 255) - mean) / std`` (CLIP, DINOv2)."""

    model: torch.nn.Module
    mean: torch.Tensor  # 1 x 3 x 1 x 1
    std: torch.Tensor

    def set_normalization(self, mean: Any, std: Any) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def to(self, device: str | torch.device) -> NormalizedExtractor:
        self.device = torch.device(device)
        self.model.to(self.device)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)
        return self

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """``[0, 255]`` batch on any device -> the model's normalised input on ``device``."""
        return (batch.to(self.device) / 255.0 - self.mean) / self.std


ExtractorFactory = Callable[..., FeatureExtractor]
EXTRACTORS: Registry[ExtractorFactory] = Registry("feature extractor")


def load_extractor(
    name: str,
    *,
    device: str | torch.device | None = None,
    weights: str | None = None,
    **options: Any,
) -> FeatureExtractor:
    """Build registered extractor ``name``; ``weights`` is a local file/folder override.

    ``options`` are the extractor's own (e.g. ``model``/``pretrained`` for ``clip``,
    ``resize_mode`` for ``inception``). Unknown options raise :class:`RdbenchError`.
    """
    import rdbench.features  # noqa: F401 - registers the built-in extractors

    factory = EXTRACTORS.get(name)
    dev = resolve_device(device)
    try:
        import inspect

        inspect.signature(factory).bind(device=dev, weights=weights, **options)
    except TypeError as exc:
        raise RdbenchError(f"feature extractor {name!r}: bad options {options}: {exc}") from None
    return factory(device=dev, weights=weights, **options)
