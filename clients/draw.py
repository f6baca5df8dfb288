"""Draw a grounding result on its image: verified boxes solid, an abstention distinctly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from boxguard.guards.types import Detection
    from boxguard.guards.wire import GroundResponse

PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 200, 83),
    (41, 121, 255),
    (255, 171, 0),
    (213, 0, 249),
    (0, 184, 212),
    (255, 87, 34),
)
ABSTAIN_COLOR = (229, 57, 53)
Box = tuple[float, float, float, float]
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def _font(size: int) -> Font:
    """A TrueType font when Pillow has one, else the bitmap default."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def _scaled(bbox: Sequence[float], sx: float, sy: float) -> Box:
    """A box scaled from the result's pixel frame to the drawn image's (corners ordered)."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    x1, x2 = sorted((x1 * sx, x2 * sx))
    y1, y2 = sorted((y1 * sy, y2 * sy))
    return (x1, y1, x2, y2)


def _dashed_line(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    color: tuple[int, int, int],
    width: int,
    dash: float,
) -> None:
    """A dashed straight line from start to end."""
    (x0, y0), (x1, y1) = start, end
    length = max(abs(x1 - x0), abs(y1 - y0))
    if length == 0:
        return
    steps = int(length // dash) + 1
    for i in range(0, steps, 2):
        a = i * dash / length
        b = min((i + 1) * dash / length, 1.0)
        draw.line(
            [(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
            fill=color,
            width=width,
        )


def dashed_rectangle(
    draw: ImageDraw.ImageDraw, box: Box, color: tuple[int, int, int], width: int, dash: float
) -> None:
    """A rectangle outline drawn with dashes."""
    x1, y1, x2, y2 = box
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    for start, end in zip(corners, corners[1:], strict=False):
        _dashed_line(draw, start, end, color, width, dash)


def _label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    color: tuple[int, int, int],
    font: Font,
    image_size: tuple[int, int],
) -> None:
    """A filled label tag above (or inside, at the top edge) a box."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 4
    x = min(max(0.0, xy[0]), max(0.0, image_size[0] - w))
    y = xy[1] - h if xy[1] - h >= 0 else xy[1]
    draw.rectangle([x, y, x + w, y + h], fill=color)
    draw.text((x + 3 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)


def _caption(det: Detection, fallback: str) -> str:
    """'label 0.87' for a detection."""
    text = det.label or fallback
    if det.confidence is not None:
        text = f"{text} {det.confidence:.2f}"
    return text


def draw_result(
    result: GroundResponse,
    image: Image.Image,
    *,
    expression: str | None = None,
    width: int | None = None,
) -> Image.Image:
    """A copy of `image` with the result drawn on it.

    Accepted detections are solid boxes with label and confidence; an abstention gets a red
    banner with its reasons and its rejected candidates as dashed red boxes.
    """
    canvas = image.convert("RGB").copy()
    sx = canvas.width / result.image.width if result.image.width else 1.0
    sy = canvas.height / result.image.height if result.image.height else 1.0
    line = width or max(2, round(min(canvas.size) / 200))
    font = _font(max(11, round(min(canvas.size) / 40)))
    draw = ImageDraw.Draw(canvas)
    fallback = expression or "object"
    if result.status == "accepted":
        for i, det in enumerate(result.detections):
            color = PALETTE[i % len(PALETTE)]
            at = _mark(draw, det, (sx, sy), color, line, dashed=False)
            _label(draw, at, _caption(det, fallback), color, font, canvas.size)
        if not result.detections:
            _banner(draw, "no matching object", PALETTE[1], font, canvas.size)
        return canvas
    for det in result.candidates:
        at = _mark(draw, det, (sx, sy), ABSTAIN_COLOR, line, dashed=True)
        _label(draw, at, _caption(det, fallback), ABSTAIN_COLOR, font, canvas.size)
    reasons = ", ".join(result.reasons) or "unspecified"
    _banner(draw, f"ABSTAINED: {reasons}", ABSTAIN_COLOR, font, canvas.size)
    return canvas


def _mark(
    draw: ImageDraw.ImageDraw,
    det: Detection,
    scale: tuple[float, float],
    color: tuple[int, int, int],
    line: int,
    *,
    dashed: bool,
) -> tuple[float, float]:
    """Draw a detection's box (dashed when rejected), or a crosshair at its point; returns
    where its label goes."""
    if det.point is not None:
        x, y, r = det.point[0] * scale[0], det.point[1] * scale[1], line * 6
        draw.line([(x - r, y), (x + r, y)], fill=color, width=line)
        draw.line([(x, y - r), (x, y + r)], fill=color, width=line)
        draw.ellipse([x - r / 2, y - r / 2, x + r / 2, y + r / 2], outline=color, width=line)
        return x + r / 2, y + r / 2
    box = _scaled(det.bbox or (0.0, 0.0, 0.0, 0.0), *scale)
    if dashed:
        dashed_rectangle(draw, box, color, line, dash=max(4.0, line * 3.0))
    else:
        draw.rectangle(box, outline=color, width=line)
    return box[0], box[1]


def _banner(
    draw: ImageDraw.ImageDraw,
    text: str,
    color: tuple[int, int, int],
    font: Font,
    size: tuple[int, int],
) -> None:
    """A full-width strip at the top of the image with white text."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    h = bottom - top + 8
    draw.rectangle([0, 0, size[0], h], fill=color)
    draw.text((4 - left, 4 - top), text, fill=(255, 255, 255), font=font)
