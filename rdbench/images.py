"""Decode image bytes into RGB ``PIL.Image`` objects by fixed, documented rules.

Every image rdbench scores or embeds goes through :func:`decode_rgb`, so two runs (or two
tools) that read the same file see the same pixels.

Rules, applied in this order:

1. Only raster formats Pillow decodes natively are opened: PNG, JPEG (and MPO), WebP, BMP,
   GIF and TIFF (no EPS/PDF, which would run external programs). Multi-frame files (GIF,
   TIFF, MPO) give their first frame.
2. Size check before any pixel is decoded: ``width * height > max_pixels`` is refused as a
   possible decompression bomb (default 89,478,485 = Pillow's ``MAX_IMAGE_PIXELS``). Pillow
   itself refuses anything over twice its global ``PIL.Image.MAX_IMAGE_PIXELS``; a larger
   ``max_pixels`` needs that global raised too.
3. The whole file is decoded; a truncated or corrupt file is an error (rdbench never sets
   ``ImageFile.LOAD_TRUNCATED_IMAGES``).
4. The EXIF orientation tag is applied (``ImageOps.exif_transpose``), as viewers do.
5. Mode conversion to 8-bit RGB:

   - ``RGB``: unchanged.
   - ``1``, ``L``: the gray value is replicated into R, G and B.
   - ``P``: through the palette; a palette with transparency is treated as ``RGBA``.
   - ``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``: alpha-composited over **white**,
     ``out = a * c + (1 - a) * 255`` with ``a = alpha / 255``. Generators save RGBA with
     opaque alpha, where this is the identity; for truly transparent pixels white is how
     browsers and viewers show them on a page, whereas dropping alpha would expose whatever
     colour the invisible pixels happen to store (often black).
   - ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit gray): ``round(v / 257)``, which maps
     0..65535 onto 0..255 exactly at both ends, then replicated.
   - ``I`` (32-bit int, what older Pillow gave for 16-bit PNGs): clipped to 0..65535, then
     as 16-bit.
   - ``F`` (32-bit float): taken as intensities in [0, 1] (the convention of arrays that
     diffusion pipelines output), clipped, ``round(255 * v)``, then replicated.
   - ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and the rest: Pillow's own ``convert("RGB")``
     (for CMYK ``r = (255 - c) * (255 - k) / 255`` and likewise for g, b; embedded ICC
     profiles are not applied).

   16-bit-per-channel colour PNGs are reduced to 8 bits by Pillow when opened.

Any failure raises :class:`ImageDecodeError` (an :class:`~rdbench.errors.RdbenchError`)
whose message names the file and the reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from rdbench.errors import RdbenchError

#: File extensions (lower case) that folder scans pick up as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
)

#: Pillow formats :func:`decode_rgb` opens (JPEG includes multi-picture MPO files).
FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

#: Default pixel limit, equal to Pillow's ``Image.MAX_IMAGE_PIXELS`` default.
MAX_PIXELS = 89_478_485

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageDecodeError(RdbenchError):
    """A file could not be decoded as an image (corrupt, truncated, too large, not an image)."""


def decode_rgb(data: bytes, name: str, *, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into a loaded 8-bit RGB image by the rules in the module docstring.

    ``name`` is only used in error messages (pass the file's path or set key).
    ``max_pixels=None`` leaves only Pillow's own global limit.
    """
    label = repr(name)
    if not data:
        raise ImageDecodeError(f"{label}: the file is empty (0 bytes); it is not an image")
    try:
        with warnings.catch_warnings():
            # The explicit size check below replaces Pillow's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"{label}: refused as a possible decompression bomb ({exc}); rdbench's limit is "
            f"max_pixels={max_pixels if max_pixels is None else format(max_pixels, ',')}"
        ) from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            f"{label}: not a readable image: unknown format or corrupt header "
            f"({len(data):,} bytes; supported formats: {', '.join(FORMATS)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt file
        raise ImageDecodeError(
            f"{label}: cannot read the image header ({_reason(exc)}); the file is truncated or "
            "corrupt"
        ) from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"{label}: image is {width} x {height} = {width * height:,} pixels, over the limit "
            f"of {max_pixels:,} (possible decompression bomb); raise max_pixels if it is genuine"
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder errors are OSError, SyntaxError, ...
        raise ImageDecodeError(
            f"{label}: cannot decode {image.format} data ({_reason(exc)}); the file is "
            "truncated or corrupt"
        ) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a loaded image of any Pillow mode to 8-bit RGB (rules: module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _GRAY16_MODES or mode == "I":
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0
        return _gray_to_rgb(values)
    if mode == "F":
        return _gray_to_rgb(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0)
    return image.convert("RGB")


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    """An (H, W) array of 0..255 floats, rounded half to even, replicated into RGB."""
    gray = np.rint(values).astype(np.uint8)
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
