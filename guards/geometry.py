"""Coordinate frames, box mapping, and the `geometry` and `cardinality` checks."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .context import Box, Context, not_run, result
from .lexicon import relation
from .nouns import analyze
from .parse import Parsed
from .parse_values import RawBox
from .types import BBox, CheckResult


def resolve_frame(frame: str, parsed: Parsed) -> str:
    """The frame to use: explicit frames win; 'auto' follows the values and the parse.

    All-float coordinates in [0, 1] are normalized; Qwen2-VL box tokens and Visual-RFT
    ``Position`` lists are 0..1000 relative; anything else is pixels of the model frame.
    """
    if frame != "auto":
        return frame
    vals = [v for b in parsed.boxes for v in b.coords]
    if vals and all(0.0 <= v <= 1.0 for v in vals) and any(b.has_float for b in parsed.boxes):
        return "normalized"
    return parsed.native_frame or "pixels"


def map_box(
    coords: tuple[float, float, float, float],
    frame: str,
    image_size: tuple[float, float],
    model_size: tuple[float, float],
) -> BBox:
    """Map model-frame coordinates to original-image pixels (no ordering or clamping)."""
    w, h = image_size
    x1, y1, x2, y2 = coords
    if frame == "relative1000":
        sx, sy = w / 1000.0, h / 1000.0
    elif frame == "normalized":
        sx, sy = w, h
    else:
        sx, sy = w / model_size[0], h / model_size[1]
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def map_boxes(
    raws: list[RawBox], frame: str, image_size: tuple[float, float], model_size: tuple[float, float]
) -> list[Box]:
    """Map every raw box, ordering reversed corners so that downstream IoU is meaningful."""
    out = []
    for r in raws:
        x1, y1, x2, y2 = map_box(r.coords, frame, image_size, model_size)
        out.append(Box(raw=r, bbox=(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))))
    return out


def clamp(bbox: BBox, image_size: tuple[float, float]) -> BBox:
    """Clip a box to the image; a NaN coordinate (JSON allows ``NaN``) becomes 0."""
    w, h = image_size
    return (_clip(bbox[0], w), _clip(bbox[1], h), _clip(bbox[2], w), _clip(bbox[3], h))


def _clip(value: float, high: float) -> float:
    """``value`` limited to [0, high]; NaN (which min/max pass through) to 0."""
    return 0.0 if math.isnan(value) else min(max(value, 0.0), high)


def area(b: Sequence[float]) -> float:
    """Area of an ordered box (0 when degenerate)."""
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ordered [x1, y1, x2, y2] boxes: the one IoU of boxguard.

    Example:
        >>> iou([0, 0, 10, 10], [5, 0, 15, 10])
        0.3333333333333333
    """
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def _box_problem(ctx: Context, box: Box) -> str | None:
    """Why one box is geometrically unacceptable (None if fine); clamps it in place."""
    p = ctx.policy
    w, h = ctx.image_size
    raw = box.raw.coords
    if ctx.frame == "pixels" and all(0.0 <= v <= 1.0 for v in raw):
        return f"normalized-looking coordinates {list(raw)} in a pixel frame (not rescaled)"
    full = area(box.bbox)
    if full <= 0.0:
        return "degenerate box (zero width or height)"
    inside = area(clamp(box.bbox, ctx.image_size))
    outside = 1.0 - inside / full
    if outside > p.max_outside_frac:
        return f"{outside:.0%} of the box lies outside the image"
    box.bbox = clamp(box.bbox, ctx.image_size)
    bw, bh = box.bbox[2] - box.bbox[0], box.bbox[3] - box.bbox[1]
    if min(bw, bh) < p.min_box_side_px:
        return f"degenerate box: side {min(bw, bh):.2f} px < {p.min_box_side_px:g} px"
    frac = bw * bh / (w * h)
    if frac < p.min_box_area_frac:
        return f"degenerate box: area {frac:.2e} of the image < {p.min_box_area_frac:g}"
    if frac >= p.whole_image_frac and not ctx.expr_info().whole_image:
        return f"box covers {frac:.0%} of the image, which the expression does not ask for"
    return None


def _point_problem(ctx: Context, box: Box) -> str | None:
    """Why one point is unacceptable (None if fine): outside the image, or unscaled."""
    w, h = ctx.image_size
    x, y = box.bbox[0], box.bbox[1]
    if ctx.frame == "pixels" and all(0.0 <= v <= 1.0 for v in box.raw.coords):
        return f"normalized-looking coordinates {list(box.raw.coords[:2])} in a pixel frame"
    if not (0.0 <= x <= w and 0.0 <= y <= h):  # NaN fails too
        return f"point ({x:.1f}, {y:.1f}) lies outside the {w:g}x{h:g} image"
    return None


def check_geometry(ctx: Context) -> CheckResult:
    """Corners ordered, non-degenerate, inside the image, not the whole image; points inside."""
    if not ctx.boxes:
        return not_run(ctx, "geometry", "no points" if ctx.points else "no boxes")
    if ctx.points:
        reasons = {i: _point_problem(ctx, b) for i, b in enumerate(ctx.boxes)}
        ctx.kept = [i for i, w in reasons.items() if w is None]
        bad = [f"point {i}: {w}" for i, w in reasons.items() if w is not None]
        score = len(ctx.kept) / len(ctx.boxes)
        if bad:
            return result(ctx, "geometry", False, "; ".join(bad), score)
        return result(ctx, "geometry", True, f"{len(ctx.kept)} point(s) inside the image", score)
    problems: list[str] = []
    swapped = sum(
        1
        for b in ctx.boxes
        if b.raw.coords[0] > b.raw.coords[2] or b.raw.coords[1] > b.raw.coords[3]
    )
    good: list[int] = []
    for i, box in enumerate(ctx.boxes):
        why = _box_problem(ctx, box)
        if why is None:
            good.append(i)
        else:
            problems.append(f"box {i}: {why}")
    # Non-fatal geometry drops the bad boxes instead of abstaining.
    ctx.kept = good
    score = len(good) / len(ctx.boxes)
    if problems:
        return result(ctx, "geometry", False, "; ".join(problems), score)
    note = f", swapped reversed corners of {swapped} box(es)" if swapped else ""
    return result(ctx, "geometry", True, f"{len(good)} box(es) inside the image{note}", score)


_ANY_OVERLAP = 1e-9


def _same_object(ctx: Context, a: Box, b: Box, min_iou: float) -> bool:
    """Near-duplicate boxes (points within the policy's radius) with compatible labels are one
    object."""
    if ctx.points:
        if math.dist(a.bbox[:2], b.bbox[:2]) > ctx.point_radius():
            return False
    elif iou(a.bbox, b.bbox) < min_iou:
        return False
    if a.raw.label is None or b.raw.label is None:
        return True
    ha, hb = analyze(a.raw.label).head, analyze(b.raw.label).head
    if ha is None or hb is None:
        return True
    return relation(ha, hb) in ("same", "synonym", "hypernym")


def check_cardinality(ctx: Context) -> CheckResult:
    """Merge near-duplicates; flag several boxes without `multiple`, refused no-object answers.

    A point request answered "no such element" abstains here, in the model's words: a caller
    that asked where to click has nothing to click.
    """
    if not ctx.boxes and ctx.parsed.no_object and ctx.points:
        return result(
            ctx,
            "cardinality",
            False,
            f"no point: the model says the element is absent ({ctx.parsed.detail})",
            0.0,
        )
    if not ctx.boxes and ctx.parsed.no_object and not ctx.policy.accept_no_object:
        return result(
            ctx,
            "cardinality",
            False,
            "the model answered [] (no such object), which no check can verify; "
            "the policy does not accept that (accept_no_object false)",
            0.0,
        )
    distinct: list[int] = []
    for i in ctx.kept:
        if not any(
            _same_object(ctx, ctx.boxes[j], ctx.boxes[i], ctx.policy.duplicate_iou)
            for j in distinct
        ):
            distinct.append(i)
    merged = len(ctx.kept) - len(distinct)
    note = f" (merged {merged} near-duplicate(s))" if merged else ""
    n = len(distinct)
    noun = "point" if ctx.points else "box"
    if ctx.multiple:
        ctx.kept = distinct
        return result(
            ctx, "cardinality", True, f"{n} distinct {noun}(s), multiple allowed{note}", float(n)
        )
    if n > 1:
        # Boxes that overlap the first, with compatible labels, are the same object drawn twice
        # (a draft and a final extent): keep the model's first. A box sharing no pixel with it,
        # or naming something else, is a second object.
        first = ctx.boxes[distinct[0]]
        others = [
            i for i in distinct[1:] if not _same_object(ctx, first, ctx.boxes[i], _ANY_OVERLAP)
        ]
        if len(others) < n - 1:
            note += f" (kept the first of {n - len(others)} overlapping boxes)"
        distinct = [distinct[0], *others]
        n = len(distinct)
    ctx.kept = distinct
    if n > 1:
        return result(
            ctx,
            "cardinality",
            False,
            f"{n} distinct {noun}s for a single-object request: ambiguous{note}",
            float(n),
        )
    return result(ctx, "cardinality", True, f"{n} {noun}(s){note}", float(n))
