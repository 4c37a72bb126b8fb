"""Image preprocessing for reward models, in two matching forms.

* ``pil_*``: the official path of CLIP-style models (PIL bicubic resize, as the reference
  packages do), used by :meth:`Reward.score` so scores match the published numbers. (HPSv2's
  official transform resizes float tensors, so its official path is the tensor one.)
* ``tensor_*``: the same geometry with torch ops only (``interpolate(bicubic, antialias)``,
  slicing, ``pad``), differentiable with respect to a ``B x 3 x H x W`` batch in ``[0, 1]``;
  used by :meth:`Reward.score_tensor` for reward finetuning (DRaFT).

Both forms compute output sizes and crop offsets with torchvision's integer rules, so they
differ only by interpolation round-off (PIL resizes 8-bit images; torch resizes floats).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from rdbench.errors import RdbenchError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def shortest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (h, w) when the shortest side is resized to ``size`` (torchvision's rule)."""
    if height <= width:
        return size, max(size, int(size * width / height))
    return max(size, int(size * height / width)), size


def longest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (h, w) when the longest side is resized to ``size`` (HPSv2's ``ResizeMaxSize``)."""
    scale = size / float(max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def crop_offsets(height: int, width: int, size: int, *, floor: bool = False) -> tuple[int, int]:
    """Top/left offsets of a centred ``size x size`` crop.

    torchvision's ``center_crop`` rounds half the margin (``floor=False``, open_clip);
    transformers' ``CLIPImageProcessor`` floors it (``floor=True``, PickScore).
    """
    if floor:
        return (height - size) // 2, (width - size) // 2
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def pad_amounts(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that centres an image in ``size x size``."""
    pad_h, pad_w = size - height, size - width
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


# --- official (PIL) path ------------------------------------------------------------------


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(image).float().div_(255.0)


def pil_resize_center_crop(
    image: Image.Image, size: int, crop: int | None = None, *, floor: bool = False
) -> torch.Tensor:
    """CLIP's eval transform: bicubic resize of the shortest side to ``size``, centre crop
    ``crop x crop`` (default ``size``), to [0, 1]."""
    crop = size if crop is None else crop
    h, w = shortest_side_size(image.height, image.width, size)
    if (h, w) != (image.height, image.width):
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    top, left = crop_offsets(h, w, crop, floor=floor)
    return _pil_to_tensor(image.crop((left, top, left + crop, top + crop)))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """``torchvision.transforms.ToTensor``: 3 x H x W float in [0, 1]."""
    return _pil_to_tensor(image)


# --- differentiable (torch) path ----------------------------------------------------------


def check_image_tensor(images: torch.Tensor) -> torch.Tensor:
    """Validate a ``B x 3 x H x W`` floating batch in [0, 1] (values are not clipped)."""
    if not isinstance(images, torch.Tensor):
        raise RdbenchError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise RdbenchError(
            f"images must have shape B x 3 x H x W with B >= 1, got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise RdbenchError(f"images must be floating point in [0, 1], got {images.dtype}")
    return images


def _resize(images: torch.Tensor, hw: tuple[int, int], clamp: bool) -> torch.Tensor:
    if tuple(images.shape[-2:]) == hw:
        return images
    # resize in float32 at least (antialiased bicubic has no bfloat16 CPU kernel)
    work = images if images.dtype == torch.float64 else images.float()
    out = F.interpolate(work, size=hw, mode="bicubic", antialias=True, align_corners=False)
    out = out.clamp(0.0, 1.0) if clamp else out  # PIL clips its 8-bit output
    return out.to(images.dtype)


def tensor_resize_center_crop(
    images: torch.Tensor, size: int, crop: int | None = None, *, floor: bool = False
) -> torch.Tensor:
    """Differentiable :func:`pil_resize_center_crop`."""
    crop = size if crop is None else crop
    h, w = shortest_side_size(images.shape[-2], images.shape[-1], size)
    images = _resize(images, (h, w), clamp=True)
    top, left = crop_offsets(h, w, crop, floor=floor)
    return images[..., top : top + crop, left : left + crop]


def tensor_resize_longest_pad(images: torch.Tensor, size: int) -> torch.Tensor:
    """HPSv2's ``ResizeMaxSize``: bicubic (antialiased) resize of the longest side to ``size``
    on float tensors (the ``hpsv2`` package applies ``ToTensor`` before resizing, so values
    are not clipped), then centred zero padding to ``size x size``. Unlike the original, an
    image whose longest side already equals ``size`` is padded too (the original passes it
    through non-square, which its model cannot take)."""
    h, w = longest_side_size(images.shape[-2], images.shape[-1], size)
    return F.pad(_resize(images, (h, w), clamp=False), pad_amounts(h, w, size), value=0.0)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s
