"""Decoding rules of rdbench.images: mode conversions, EXIF orientation, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from imagegen import draw_image, encode, png_claiming_size
from PIL import Image, ImageFile

from rdbench.errors import RdbenchError
from rdbench.images import IMAGE_EXTENSIONS, MAX_PIXELS, ImageDecodeError, decode_rgb, to_rgb


def _pixels(data: bytes) -> np.ndarray:
    image = decode_rgb(data, "x.png")
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255.0
    return np.rint(a * rgb + (1 - a) * 255)


def test_rgb_png_is_unchanged():
    image = draw_image(3, 7)
    assert np.array_equal(_pixels(encode(image)), np.asarray(image))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_gray_is_replicated(mode):
    gray = np.array([[0, 255, 90, 200]], dtype=np.uint8)
    image = Image.fromarray(gray).convert(mode)
    out = _pixels(encode(image))
    expected = np.asarray(image.convert("L")).astype(int)
    assert out.shape == (1, 4, 3)
    for channel in range(3):
        assert np.array_equal(out[..., channel], expected)


def test_rgba_and_la_are_composited_over_white():
    rgb = np.array([[[200, 100, 0], [10, 20, 30], [255, 0, 255], [7, 8, 9]]], dtype=np.uint8)
    alpha = np.array([[255, 128, 0, 64]], dtype=np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    out = _pixels(encode(rgba))
    assert np.abs(out - _over_white(rgb, alpha)).max() <= 1
    assert out[0, 0].tolist() == [200, 100, 0]  # opaque: unchanged
    assert out[0, 2].tolist() == [255, 255, 255]  # fully transparent: white
    gray = np.array([[40, 40, 40, 40]], dtype=np.uint8)
    la = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)])
    out_la = _pixels(encode(la))
    expected = _over_white(np.repeat(gray[..., None], 3, axis=2), alpha)
    assert np.abs(out_la - expected).max() <= 1


def test_opaque_rgba_equals_rgb():
    image = draw_image(1, 2)
    assert np.array_equal(_pixels(encode(image.convert("RGBA"))), np.asarray(image))


def test_palette_with_and_without_transparency():
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    palette_image.putdata([0, 1, 2])
    assert _pixels(encode(palette_image)).tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]
    out = _pixels(encode(palette_image, transparency=1))  # index 1 transparent
    assert out.tolist() == [[[255, 0, 0], [255, 255, 255], [0, 0, 255]]]


def test_cmyk_uses_pillows_formula():
    cmyk = Image.new("CMYK", (2, 2), (10, 20, 30, 40))
    out = _pixels(encode(cmyk, "TIFF"))
    c, k = np.array([10, 20, 30]), 40
    expected = np.rint((255 - c) * (255 - k) / 255)
    assert np.abs(out[0, 0] - expected).max() <= 1
    assert out[0, 0].tolist() == out[1, 1].tolist()


def test_sixteen_bit_gray_divides_by_257():
    values = np.array([[0, 65535, 771, 32896, 128, 129]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    out = _pixels(encode(image))
    assert out[..., 0].tolist() == [[0, 255, 3, 128, 0, 1]]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_sixteen_bit_big_endian_and_int32_modes():
    values = np.array([[0, 65535, 25700]], dtype=">u2")
    big = Image.frombytes("I;16B", (3, 1), values.tobytes())
    assert np.asarray(to_rgb(big))[0, :, 1].tolist() == [0, 255, 100]
    wide = Image.fromarray(np.array([[-5, 70000, 514]], dtype=np.int32))
    assert wide.mode == "I"
    assert _pixels(encode(wide, "TIFF"))[0, :, 0].tolist() == [0, 255, 2]


def test_float_mode_is_taken_in_unit_range():
    image = Image.fromarray(np.array([[0.0, 0.25, 1.0, 2.0, -1.0]], dtype=np.float32))
    assert image.mode == "F"
    assert _pixels(encode(image, "TIFF"))[0, :, 0].tolist() == [0, 64, 255, 255, 0]


def test_exif_orientation_is_applied():
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)  # 4 wide, 2 high
    pixels[0, 0] = (255, 0, 0)  # top-left red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = decode_rgb(encode(Image.fromarray(pixels), exif=exif.tobytes()), "rot.png")
    assert out.size == (2, 4)
    arr = np.asarray(out)
    assert arr[0, 1].tolist() == [255, 0, 0]  # top-left moved to top-right
    assert int(arr.sum()) == 255


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is a text file, not a PNG\n", "unknown format or corrupt header"),
        (
            b"P6 1 1 255\n\x00\x00\x00",
            "unknown format or corrupt header",
        ),  # PPM: format not allowed
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "unknown format or corrupt header"),
    ],
)
def test_non_images_are_refused(data, reason):
    with pytest.raises(ImageDecodeError, match=reason) as info:
        decode_rgb(data, "dir/bad file.png")
    assert "dir/bad file.png" in str(info.value)
    assert isinstance(info.value, RdbenchError)


def test_truncated_jpeg_is_an_error_and_global_flag_untouched():
    data = encode(draw_image(0, 0, size=(128, 128), style="noise"), "JPEG", quality=95)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt") as info:
        decode_rgb(data[: len(data) * 2 // 3], "cut.jpg")
    assert "cut.jpg" in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_data_is_an_error():
    data = bytearray(encode(draw_image(0, 0, style="noise")))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 60] = b"\xff" * 40
    with pytest.raises(ImageDecodeError, match="corrupt.png"):
        decode_rgb(bytes(data), "corrupt.png")


def test_decompression_bomb_header_is_refused_without_allocating():
    with pytest.raises(ImageDecodeError, match="decompression bomb") as info:
        decode_rgb(png_claiming_size(30000, 30000), "huge.png")
    message = str(info.value)
    assert "huge.png" in message and "900000000" in message.replace(",", "")
    assert f"{MAX_PIXELS:,}" in message


def test_own_pixel_limit_names_size_and_limit():
    data = encode(draw_image(0, 0, size=(64, 48)))
    with pytest.raises(ImageDecodeError, match=r"64 x 48 = 3,072 pixels.*limit of 1,000"):
        decode_rgb(data, "big.png", max_pixels=1000)
    assert decode_rgb(data, "big.png", max_pixels=3072).size == (64, 48)


def test_message_for_undecodable_file_name_is_printable():
    with pytest.raises(ImageDecodeError) as info:
        decode_rgb(b"", "caf\udce9.png")  # a non-UTF-8 byte kept by os.fsdecode
    str(info.value).encode("utf-8")  # would raise on a lone surrogate
    assert "caf\\udce9.png" in str(info.value)


def test_image_extensions_are_lower_case_with_dot():
    assert ".png" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
