"""Request images: base64 and data URLs, formats, pixel bombs, truncation, limits, EXIF, modes."""

from __future__ import annotations

import base64
import io
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from boxguard.server.errors import (
    AspectRatioTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    InvalidBase64,
    InvalidImage,
)
from boxguard.server.imaging import decode_base64_image, open_image
from PIL import Image

LIMITS = dict(max_pixels=4_000_000, min_side=8, max_aspect_ratio=200.0)


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png(size: tuple[int, int] = (32, 24), color: object = "red", mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, size, color), "PNG")


def open_(data: bytes, **overrides: object) -> Image.Image:
    return open_image(data, **{**LIMITS, **overrides})  # type: ignore[arg-type]


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR width/height (and its CRC) of a valid PNG; the pixel data stays small."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    (length,) = struct.unpack(">I", data[8:12])
    body = b"IHDR" + struct.pack(">II", width, height) + data[24 : 16 + length]
    return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[16 + length + 4 :]


# -- base64 -----------------------------------------------------------------------------------


def test_plain_base64() -> None:
    data = png()
    assert decode_base64_image(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize(
    "prefix",
    [
        "data:image/png;base64,",
        "data:image/jpeg;base64,",
        "DATA:IMAGE/PNG;BASE64,",
        "data:;base64,",
        "data:image/png;name=a.png;base64,",
    ],
)
def test_data_url(prefix: str) -> None:
    data = png()
    assert decode_base64_image(prefix + base64.b64encode(data).decode()) == data


def test_whitespace_and_line_breaks_in_base64_are_ignored() -> None:
    data = png()
    text = base64.encodebytes(data).decode()  # MIME style, a newline every 76 characters
    assert "\n" in text
    assert decode_base64_image("  " + text + "  ") == data


@pytest.mark.parametrize("value", ["not base64!!", "aGVsbG8", "data:image/png;base64,@@@@", "é"])
def test_invalid_base64(value: str) -> None:
    with pytest.raises(InvalidBase64):
        decode_base64_image(value)


@pytest.mark.parametrize("value", ["", "   ", "data:image/png;base64,", "\n"])
def test_empty_base64(value: str) -> None:
    with pytest.raises(InvalidBase64, match="empty"):
        decode_base64_image(value)


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 95}),
        ("GIF", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        ("BMP", {}),
    ],
)
def test_formats_open_as_rgb(fmt: str, kw: dict) -> None:
    data = encode(Image.new("RGB", (40, 30), (255, 0, 0)), fmt, **kw)
    image = open_(data)
    assert image.mode == "RGB"
    assert image.size == (40, 30)
    r, g, b = image.getpixel((20, 15))
    assert r > 200 and g < 50 and b < 50


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n"])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        open_(data)


# -- pixel bombs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (50_000, 50_000),  # over PIL's own bomb error threshold
        (10_000, 10_000),  # over PIL's bomb warning threshold
        (5_000, 5_000),  # only over our max_pixels
        (2001, 2000),  # just over 4,000,000
    ],
)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_bomb_is_refused_before_decoding(width: int, height: int) -> None:
    bomb = patch_png_size(png((16, 16)), width, height)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        open_(bomb)
    assert time.perf_counter() - started < 0.5


def test_the_patched_header_is_what_pil_reads() -> None:
    with Image.open(io.BytesIO(patch_png_size(png((16, 16)), 3000, 1000))) as image:
        assert image.size == (3000, 1000)


def test_image_exactly_at_max_pixels_is_decoded() -> None:
    image = open_(png((100, 40)), max_pixels=4000)
    assert image.size == (100, 40)


def test_image_too_large_maps_to_413() -> None:
    assert ImageTooLarge.status_code == 413


def test_pils_bomb_warning_threshold_defers_to_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x30 is over it, under twice it
    with pytest.warns(Image.DecompressionBombWarning):
        assert open_(png((40, 30))).size == (40, 30)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge):
        open_(png((40, 30)), max_pixels=1199)


def test_concurrent_decoding_keeps_the_warning_filters() -> None:
    # catch_warnings() in the decode threads at once left servers ignoring every warning.
    before = list(warnings.filters)
    data = png((16, 16))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: open_(data), range(4000)))
    assert list(warnings.filters) == before


# -- truncated and corrupt --------------------------------------------------------------------


def _noisy(size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.frombytes("RGB", size, bytes((i * 37) % 251 for i in range(size[0] * size[1] * 3)))


@pytest.mark.parametrize(("fmt", "keep"), [("PNG", 0.5), ("JPEG", 0.5), ("PNG", 0.9), ("GIF", 0.5)])
def test_truncated_image_is_invalid(fmt: str, keep: float) -> None:
    data = encode(_noisy(), fmt)
    with pytest.raises(InvalidImage):
        open_(data[: int(len(data) * keep)])


def test_png_cut_inside_the_header_is_invalid() -> None:
    with pytest.raises(InvalidImage):
        open_(png()[:20])


def test_corrupt_png_data_is_invalid() -> None:
    data = bytearray(encode(_noisy(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 60] = b"\x00" * 40
    with pytest.raises(InvalidImage):
        open_(bytes(data))


# -- size and aspect limits -------------------------------------------------------------------


def test_one_pixel_image_is_too_small() -> None:
    with pytest.raises(ImageTooSmall):
        open_(png((1, 1)), min_side=8)


@pytest.mark.parametrize("size", [(7, 100), (100, 7)])
def test_side_under_min_side_is_too_small(size: tuple[int, int]) -> None:
    with pytest.raises(ImageTooSmall):
        open_(png(size), min_side=8)


def test_min_side_is_inclusive() -> None:
    assert open_(png((8, 8)), min_side=8).size == (8, 8)


@pytest.mark.parametrize("size", [(2000, 8), (8, 2000)])
def test_aspect_ratio_250_is_refused(size: tuple[int, int]) -> None:
    with pytest.raises(AspectRatioTooLarge):
        open_(png(size))


def test_aspect_ratio_200_is_accepted() -> None:
    assert open_(png((1600, 8))).size == (1600, 8)


# -- EXIF orientation -------------------------------------------------------------------------


def _with_red_top_left(size: tuple[int, int] = (60, 30)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    for x in range(8):
        for y in range(8):
            image.putpixel((x, y), (255, 0, 0))
    return image


def _is_red(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return r > 200 and g < 80 and b < 80


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_6_rotates_90_clockwise(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored image must be rotated 90 degrees clockwise
    data = encode(
        _with_red_top_left(), fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {})
    )
    image = open_(data)
    assert image.size == (30, 60)  # width and height swapped
    # Rotating clockwise takes the top-left corner to the top-right corner.
    assert _is_red(image.getpixel((30 - 3, 3)))
    assert not _is_red(image.getpixel((3, 3)))
    assert not _is_red(image.getpixel((3, 60 - 3)))
    assert not _is_red(image.getpixel((30 - 3, 60 - 3)))


def test_no_exif_leaves_the_image_as_stored() -> None:
    image = open_(encode(_with_red_top_left(), "PNG"))
    assert image.size == (60, 30)
    assert _is_red(image.getpixel((3, 3)))


# -- modes ------------------------------------------------------------------------------------


def _p_with_transparency() -> bytes:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    for x in range(8):
        for y in range(16):
            image.putpixel((x, y), 1)
    return encode(image, "PNG", transparency=0)


def test_palette_with_transparency_composites_onto_white() -> None:
    image = open_(_p_with_transparency())
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (0, 0, 255)  # opaque palette entry 1
    assert image.getpixel((12, 2)) == (255, 255, 255)  # transparent entry 0 -> white


def test_rgba_composites_onto_white() -> None:
    image = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 255, 0, 255))
    out = open_(encode(image, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 255, 0)


def test_la_composites_onto_white() -> None:
    image = Image.new("LA", (16, 16), (0, 0))
    image.putpixel((0, 0), (0, 255))
    out = open_(encode(image, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("mode", "fmt", "color"),
    [
        ("CMYK", "JPEG", (0, 255, 255, 0)),  # red in CMYK
        ("CMYK", "TIFF", (0, 255, 255, 0)),
        ("1", "PNG", 1),
        ("L", "PNG", 128),
        ("P", "GIF", 3),
        ("I;16", "PNG", 40000),
        ("I;16", "TIFF", 40000),
        ("RGBA", "WEBP", (10, 20, 30, 255)),
    ],
)
def test_modes_convert_to_rgb(mode: str, fmt: str, color: object) -> None:
    data = encode(Image.new(mode, (16, 16), color), fmt)
    out = open_(data)
    assert out.mode == "RGB"
    assert out.size == (16, 16)


def test_cmyk_red_stays_red() -> None:
    out = open_(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "TIFF"))
    assert _is_red(out.getpixel((4, 4)))


def test_bilevel_white_stays_white() -> None:
    assert open_(png((16, 16), 1, mode="1")).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("value", "expected"), [(65535, 255), (40000, 156), (0, 0)])
def test_16_bit_grey_is_scaled_not_clipped(value: int, expected: int) -> None:
    """A 16-bit grey PNG opens as I;16: values are scaled by 1/256, not clipped to white."""
    data = encode(Image.new("I;16", (16, 16), value), "PNG")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "I;16"
    out = open_(data)
    assert out.getpixel((0, 0)) == (expected, expected, expected)


def test_16_bit_big_endian_tiff_converts() -> None:
    data = encode(Image.new("I;16B", (16, 16), 40000), "TIFF")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "I;16B"
        assert raw.convert("I").getpixel((0, 0)) == 40000  # a valid file PIL itself reads
    out = open_(data)
    assert out.getpixel((0, 0)) == (156, 156, 156)
