"""Turn the image types the SDK accepts into wire fields, and into PIL images for drawing.

Accepted: a file path (str or PathLike), raw bytes, a ``PIL.Image.Image``, a numpy array
(H×W, H×W×3 or H×W×4) or an ``http(s)://`` URL string (sent as ``image_url``, fetched by the
server).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

if TYPE_CHECKING:
    import numpy as np

    ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray
else:
    ImageInput = Any

__all__ = ["ImageInput", "encode_image", "is_url", "load_image"]


def is_url(value: object) -> bool:
    """True for an http(s) URL string."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def _is_array(value: object) -> bool:
    """True for a numpy array, without importing numpy when it is not one."""
    return type(value).__module__ == "numpy" and hasattr(value, "__array_interface__")


def _array_to_pil(array: Any) -> Image.Image:
    """A PIL image from a numpy array: uint8 as is, bool and floats in [0, 1] scaled to 0..255."""
    import numpy as np

    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def _png_bytes(image: Image.Image) -> bytes:
    """PNG encoding of a PIL image (palette and odd modes converted to RGB(A))."""
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def encode_image(image: ImageInput) -> dict[str, str]:
    """The request fields for an image: ``{"image": base64}`` or ``{"image_url": url}``.

    Paths and bytes are sent as they are (the server decodes them); PIL images and arrays as PNG.

    Example:
        >>> encode_image("https://example.com/cat.jpg")
        {'image_url': 'https://example.com/cat.jpg'}
        >>> encode_image(b"abc")
        {'image': 'YWJj'}
    """
    if isinstance(image, str):
        if is_url(image):
            return {"image_url": image}
        if image.startswith("data:"):
            return {"image": image}
        return {"image": _b64(Path(image).read_bytes())}
    if isinstance(image, os.PathLike):
        return {"image": _b64(Path(image).read_bytes())}
    if isinstance(image, (bytes, bytearray, memoryview)):
        return {"image": _b64(bytes(image))}
    if isinstance(image, Image.Image):
        return {"image": _b64(_png_bytes(image))}
    if _is_array(image):
        return {"image": _b64(_png_bytes(_array_to_pil(image)))}
    raise TypeError(
        "image must be a path, bytes, PIL.Image, numpy array or http(s) URL, "
        f"not {type(image).__name__}"
    )


def _b64(data: bytes) -> str:
    """Standard base64 text of bytes."""
    return base64.b64encode(data).decode("ascii")


def load_image(image: ImageInput) -> Image.Image:
    """A PIL image in RGB for drawing, with EXIF orientation applied as the server does.

    Example:
        >>> from PIL import Image
        >>> load_image(Image.new("L", (4, 3))).mode
        'RGB'
    """
    if is_url(image):
        raise TypeError("draw() needs the image itself (path, bytes, PIL or array), not a URL")
    if isinstance(image, str) and image.startswith("data:"):
        image = base64.b64decode(image.split(",", 1)[1])
    pil: Image.Image
    if isinstance(image, (str, os.PathLike)):
        pil = Image.open(Path(image))
    elif isinstance(image, (bytes, bytearray, memoryview)):
        pil = Image.open(io.BytesIO(bytes(image)))
    elif isinstance(image, Image.Image):
        pil = image
    elif _is_array(image):
        pil = _array_to_pil(image)
    else:
        raise TypeError(f"cannot draw on {type(image).__name__}")
    pil = ImageOps.exif_transpose(pil) or pil
    return pil.convert("RGB")
