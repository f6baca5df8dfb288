"""Decode request images safely: base64/data URLs, pixel-bomb refusal, EXIF orientation, RGB."""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    AspectRatioTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    InvalidBase64,
    InvalidImage,
)

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,", re.I)


def decode_base64_image(value: str) -> bytes:
    """Bytes of a base64 string or a `data:image/...;base64,` URL."""
    match = _DATA_URL.match(value)
    payload = value[match.end() :] if match else value
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        # Line-wrapped (MIME) base64: strip the whitespace only now, as most clients send none
        # and scanning a megabyte-sized string for it costs as much as decoding it.
        data = _decode_stripped(payload)
    if not data:
        raise InvalidBase64("the image field is empty")
    return data


def _decode_stripped(payload: str) -> bytes:
    """Strict base64 decoding of `payload` without its whitespace."""
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("the image field is not valid base64") from None


def open_image(
    data: bytes,
    *,
    max_pixels: int,
    min_side: int,
    max_aspect_ratio: float,
) -> Image.Image:
    """Open, check and fully decode an image; returns it upright (EXIF applied) in RGB.

    The declared size is checked before any pixel is decoded, so a pixel bomb costs nothing.
    Safe from many threads at once: it changes no process-wide state (the warning filters that
    `warnings.catch_warnings` swaps included), so PIL's warnings on odd files pass as warnings.
    """
    if not data:
        raise InvalidImage("the image is empty")
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidImage("the data is not an image in a supported format") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge("the image declares too many pixels") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image declares {width}x{height} = {width * height} pixels; "
            f"the limit is {max_pixels}"
        )
    try:
        image.load()
        # In place: without an orientation tag, the copy it returns otherwise is a waste.
        ImageOps.exif_transpose(image, in_place=True)
        image = _to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        raise InvalidImage("the image is truncated or corrupt") from None
    width, height = image.size
    if min(width, height) < min_side:
        raise ImageTooSmall(
            f"the image is {width}x{height}; each side must be at least {min_side} px"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect_ratio:
        raise AspectRatioTooLarge(
            f"the image's aspect ratio is {ratio:.1f}; at most {max_aspect_ratio:g} is accepted"
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, compositing transparency onto white (the model never saw alpha)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16/32-bit grey: scale to 8 bits rather than clipping to white.
        grey = (np.asarray(image).astype(np.float64) / 256).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image.convert("RGB")
