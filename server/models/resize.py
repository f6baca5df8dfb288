"""smart_resize exactly as qwen-vl-utils does it, and the server-side resize to the model frame."""

from __future__ import annotations

import math

from PIL import Image

MAX_ASPECT_RATIO = 200


class AspectRatioError(ValueError):
    """The image is more elongated than Qwen-VL's processors accept."""


def smart_resize(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """The model-input size (h_bar, w_bar): multiples of `factor`, inside [min, max] pixels.

    Example:
        >>> smart_resize(480, 640, factor=28, min_pixels=3136, max_pixels=1003520)
        (476, 644)
    """
    if min(height, width) <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise AspectRatioError(
            f"absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, "
            f"got {max(height, width) / min(height, width):.1f}"
        )
    # Python's round() is half-to-even, as in qwen-vl-utils.
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_to_frame(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to exactly (W_in, H_in) so no backend processor resizes it again."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


def frame_input(
    image: Image.Image, size: tuple[int, int], resizer: str
) -> tuple[Image.Image, tuple[int, int] | None]:
    """The image a backend gets for the frame `size`, and the frame its engine must make of it.

    `pil` resizes here (`resize_to_frame`); `engine` leaves the resize to the engine's processor.

    Example:
        >>> image = Image.new("RGB", (640, 480))
        >>> resized, frame = frame_input(image, (644, 476), "pil")
        >>> resized.size, frame
        ((644, 476), None)
        >>> kept, frame = frame_input(image, (644, 476), "engine")
        >>> kept.size, frame
        ((640, 480), (644, 476))
    """
    if resizer == "engine":
        return image, size
    return resize_to_frame(image, size), None
