"""Named resize modes: how an RGB image becomes the pixel grid an extractor sees.

Every mode maps an ``H x W x 3`` uint8 array to an ``S x S x 3`` float32 array with values in
[0, 255] (``legacy_tensorflow`` returns its uint8 input unchanged: its network resizes inside).

- ``clean`` (FID default): clean-fid's own resizer,
  ``cleanfid.resize.make_resizer("PIL", False, "bicubic", (S, S))`` -- PIL bicubic on each
  channel in float32 mode, no quantisation (Parmar et al. 2022, "On Aliased Resizing and
  Surprising Subtleties in GAN Evaluation"). Calling clean-fid's function, not a copy, keeps
  FID equal to clean-fid's on the same images and weights.
- ``legacy_pytorch``: clean-fid's ``make_resizer("PyTorch", False, "bilinear", (S, S))``
  (``F.interpolate``, no antialiasing), as in pytorch-fid.
- ``legacy_tensorflow``: no resize outside the network; the TorchScript Inception resizes
  inside (clean-fid's ``build_resizer("legacy_tensorflow")``, as in the TF FID code). All
  images of a batch must then share one size.
- ``resize_center_crop``: open_clip's geometry (``resize_mode="shortest"``): resize the
  shorter side to ``resize_to`` (default ``S``) with PIL bicubic on uint8, then torchvision's
  ``center_crop`` to ``S x S`` (crop offsets rounded).
- ``hf_resize_center_crop``: the same as transformers' PIL ``BitImageProcessor`` (DINOv2):
  shorter side to ``resize_to`` with PIL bicubic, center crop with offsets
  ``int((W - S) / 2)`` (floored). transformers' default torchvision backend resizes tensors
  instead of PIL images, which differs by a few grey levels at edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.registry import Registry

MAX_ASPECT = 64  # crop-resize modes refuse images more elongated than this (memory)

Resizer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ResizeMode:
    """A named resize: ``build(size, resize_to)`` returns a HWC uint8 -> HWC float32 function."""

    name: str
    description: str
    build: Callable[[int, int | None], Resizer]


RESIZE_MODES: Registry[ResizeMode] = Registry("resize mode")


def _clean(size: int, resize_to: int | None) -> Resizer:
    from cleanfid.resize import make_resizer

    return make_resizer("PIL", False, "bicubic", (size, size))


def _legacy_pytorch(size: int, resize_to: int | None) -> Resizer:
    from cleanfid.resize import make_resizer

    fn = make_resizer("PyTorch", False, "bilinear", (size, size))
    return lambda x: fn(x).astype(np.float32, copy=False)


def _legacy_tensorflow(size: int, resize_to: int | None) -> Resizer:
    return lambda x: x


def _crop_resizer(size: int, resize_to: int | None, *, floor_offsets: bool) -> Resizer:
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    shorter = resize_to or size

    def fn(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        if max(h, w) > MAX_ASPECT * min(h, w):  # the resize would blow up the long side
            raise RdbenchError(
                f"image of {w}x{h} px: aspect ratio beyond {MAX_ASPECT}:1, which this resize "
                "mode (shorter side to a fixed size, then a centre crop) does not take"
            )
        img = tvf.resize(Image.fromarray(x), shorter, interpolation=InterpolationMode.BICUBIC)
        if floor_offsets:  # transformers: int((W - S) / 2); torchvision rounds instead
            left, top = int((img.width - size) / 2), int((img.height - size) / 2)
            img = img.crop((left, top, left + size, top + size))
        else:
            img = tvf.center_crop(img, [size, size])
        return np.asarray(img, dtype=np.float32)

    return fn


def _resize_center_crop(size: int, resize_to: int | None) -> Resizer:
    return _crop_resizer(size, resize_to, floor_offsets=False)


def _hf_resize_center_crop(size: int, resize_to: int | None) -> Resizer:
    return _crop_resizer(size, resize_to, floor_offsets=True)


for _mode in (
    ResizeMode("clean", "clean-fid: PIL bicubic per channel on float32 (FID default)", _clean),
    ResizeMode("legacy_pytorch", "clean-fid legacy: torch bilinear, no antialias", _legacy_pytorch),
    ResizeMode(
        "legacy_tensorflow", "clean-fid legacy: resized inside the network", _legacy_tensorflow
    ),
    ResizeMode(
        "resize_center_crop",
        "open_clip: bicubic shorter side, center crop (torchvision)",
        _resize_center_crop,
    ),
    ResizeMode(
        "hf_resize_center_crop",
        "transformers processors: bicubic shorter side, center crop (floor offsets)",
        _hf_resize_center_crop,
    ),
):
    RESIZE_MODES.register(_mode.name, _mode)


def make_resizer(mode: str, size: int, resize_to: int | None = None) -> Resizer:
    """The function for resize mode ``mode`` (see :data:`RESIZE_MODES`) at output ``size``."""
    return RESIZE_MODES.get(mode).build(size, resize_to)
