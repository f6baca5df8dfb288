"""Parse points (a click target, a grasp point) wherever real models write them.

A point is held as a RawBox whose coordinates are ``(x, y, x, y)``, so that frame resolution,
mapping to original pixels and token attribution work exactly as for boxes. Forms accepted:
``{"point_2d": [x, y]}`` (Qwen2.5-VL, Qwen3-VL), a two-number ``bbox_2d`` (GRPO outputs on
ScreenSpot), ``{"x": .., "y": ..}``, ``<point>(x, y)</point>``, ``<points x1="" y1=""
alt="">label</points>`` (the cookbook's XML), bare ``[x, y]`` / ``(x, y)``, and a box written
instead of a point (a 4-number list, Qwen2-VL box tokens): its centre is the point, and the
format detail says so.
"""

from __future__ import annotations

import re
from typing import Literal

from .parse import (
    FormatFn,
    Parsed,
    _box_tokens,
    _branch_after_bracket,
    _no_object,
    _parse,
    _Region,
    _said_no_object,
    parse_output,
)
from .parse_values import (
    _BOX_TOKEN_RE,
    _NUM,
    _OBJECT_RE,
    RawBox,
    Span,
    _is_box_key,
    scan_object,
)

OutputMode = Literal["box", "point"]

_POINT_KEYS = frozenset(
    {
        "point_2d",
        "point",
        "points",
        "point_xy",
        "click",
        "click_point",
        "coordinate",
        "coordinates",
        "position",
        "location",
        "center",
    }
)
_PAIR = r"[\(\[]\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*[\)\]]"
_POINT_TAG_RE = re.compile(r"<point>\s*" + _PAIR + r"\s*</point>", re.I)
_POINTS_ATTR_RE = re.compile(r"<points?\b(?P<attrs>[^<>]*)>(?P<label>[^<]*)(?:</points?>)?", re.I)
_ATTR_RE = re.compile(r"""\b(?P<axis>[xy])(?P<n>\d*)\s*=\s*["']?(?P<v>""" + _NUM + r""")["']?""")
_ALT_RE = re.compile(r"""\balt\s*=\s*["'](?P<alt>[^"']*)["']""")
_BARE_PAIR_RE = re.compile(_PAIR)
# Prose: "(x: 1500, y: 250)", "x=12, y=40".
_XY_TEXT_RE = re.compile(r"\bx\s*[:=]\s*(" + _NUM + r")\s*,\s*y\s*[:=]\s*(" + _NUM + r")", re.I)
_BARE_QUAD_RE = re.compile(
    r"[\(\[]\s*("
    + _NUM
    + r")\s*,\s*("
    + _NUM
    + r")\s*,\s*("
    + _NUM
    + r")\s*,\s*("
    + _NUM
    + r")\s*[\)\]]"
)


def _is_float(*lits: str) -> bool:
    """Whether any literal is written as a float."""
    return any("." in x or "e" in x.lower() for x in lits)


def _point(x: float, y: float, spans: tuple[Span, ...], has_float: bool) -> RawBox:
    """A point as a zero-size box."""
    return RawBox((x, y, x, y), coord_spans=spans, has_float=has_float)


def _centre(
    c: tuple[float, float, float, float], spans: tuple[Span, ...], has_float: bool
) -> RawBox:
    """The centre of a box as a point; every corner's digits carry it."""
    return _point((c[0] + c[2]) / 2, (c[1] + c[3]) / 2, spans, has_float)


def _match_point(m: re.Match[str], base: int = 0) -> RawBox:
    """The point of a two-group match (x, y)."""
    return _point(
        float(m[1]),
        float(m[2]),
        ((base + m.start(1), base + m.end(1)), (base + m.start(2), base + m.end(2))),
        _is_float(m[1], m[2]),
    )


def _match_centre(m: re.Match[str], base: int = 0) -> RawBox:
    """The centre of a four-group match (x1, y1, x2, y2)."""
    vals = (float(m[1]), float(m[2]), float(m[3]), float(m[4]))
    spans = tuple((base + m.start(i), base + m.end(i)) for i in range(1, 5))
    return _centre(vals, spans, _is_float(*(m[i] for i in range(1, 5))))


def _in_string(val: str, base: int) -> tuple[RawBox, bool] | None:
    """A box or point quoted in a string value; (point, whether it was a box's centre)."""
    quad = _BARE_QUAD_RE.search(val)
    if quad is not None:
        return _match_centre(quad, base), True
    pair = _BARE_PAIR_RE.search(val)
    return None if pair is None else (_match_point(pair, base), False)


def _from_edges(edges: dict[str, tuple[float, Span]]) -> tuple[RawBox, bool] | None:
    """A point from x/y keys, or the centre of a box given by edge keys."""
    if not {"x1", "y1"} <= edges.keys():
        return None
    (x, sx), (y, sy) = edges["x1"], edges["y1"]
    floats = any(v != int(v) for v, _ in edges.values())
    if {"x2", "y2"} <= edges.keys():
        (x2, sx2), (y2, sy2) = edges["x2"], edges["y2"]
        return _centre((x, y, x2, y2), (sx, sy, sx2, sy2), floats), True
    if {"w", "h"} <= edges.keys():
        (w, sw), (h, sh) = edges["w"], edges["h"]
        return _centre((x, y, x + w, y + h), (sx, sy, sw, sh), floats), True
    return _point(x, y, (sx, sy), floats), False


def _point_object(obj: str, base: int) -> tuple[RawBox | None, bool, bool]:
    """One flat ``{...}`` object: (point or None, whether it was a box's centre, malformed)."""
    fields = scan_object(obj, base, lambda key: key in _POINT_KEYS or _is_box_key(key))
    found: tuple[RawBox, bool] | None = None
    malformed = False
    for _, nums, spans, floats in fields.coords:
        if found is None and len(nums) == 2:
            found = _point(nums[0], nums[1], tuple(spans), floats), False
        elif found is None and len(nums) == 4:
            found = _centre((nums[0], nums[1], nums[2], nums[3]), tuple(spans), floats), True
        malformed = malformed or len(nums) not in (2, 4)
    if found is None and len(fields.corners) == 2:
        (a, sa, fa), (b, sb, fb) = fields.corners["top_left"], fields.corners["bottom_right"]
        found = _centre((a[0], a[1], b[0], b[1]), (*sa, *sb), fa or fb), True
    if found is None:
        found = _from_edges(fields.edges)
    if found is None:
        quoted = (_in_string(val, start) for val, start in fields.strings)
        found = next((q for q in quoted if q is not None), None)
    if found is None:
        return None, False, malformed
    point, centre = found
    fields.attach(point)
    return point, centre, False


def _detail(n: int, centres: int, what: str) -> str:
    """The format detail: how many points, and how many were a box's centre."""
    note = (
        f"; {centres} box(es) given instead of a point: the centre is the point" if centres else ""
    )
    return f"{n} point(s) from {what}{note}"


def _point_tags(r: _Region) -> Parsed | None:
    """``<point>(x, y)</point>`` and ``<points x1="" y1="" alt="">label</points>``."""
    points = [_match_point(m) for m in _POINT_TAG_RE.finditer(r.text, r.start, r.end)]
    for m in _POINTS_ATTR_RE.finditer(r.text, r.start, r.end):
        axes: dict[str, dict[str, re.Match[str]]] = {}
        for a in _ATTR_RE.finditer(m["attrs"]):
            axes.setdefault(a["n"], {})[a["axis"]] = a
        alt = _ALT_RE.search(m["attrs"])
        label = (m["label"].strip() or (alt["alt"].strip() if alt else "")) or None
        at = m.start("attrs")
        for n in sorted(axes, key=lambda k: int(k or 0)):
            pair = axes[n]
            if "x" not in pair or "y" not in pair:
                continue
            x, y = pair["x"], pair["y"]
            p = _point(
                float(x["v"]),
                float(y["v"]),
                ((at + x.start("v"), at + x.end("v")), (at + y.start("v"), at + y.end("v"))),
                _is_float(x["v"], y["v"]),
            )
            p.label = label
            if label:
                p.label_span = m.span("label") if m["label"].strip() else None
            points.append(p)
    if not points:
        return None
    first = min(p.coord_spans[0][0] for p in points)
    return r.parsed(
        True,
        "point-tags",
        boxes=points,
        branch_span=(first, first + 1),
        detail=_detail(len(points), 0, "point tags"),
    )


def _point_objects(r: _Region) -> Parsed | None:
    """JSON or Python-literal objects holding points (or boxes, whose centre is taken)."""
    objs = list(_OBJECT_RE.finditer(r.text, r.start, r.end))
    if not objs:
        return None
    points: list[RawBox] = []
    centres = bad = 0
    for m in objs:
        point, centre, malformed = _point_object(m.group(), m.start())
        if point is not None:
            points.append(point)
            centres += centre
        bad += malformed
    fmt = "python-literal" if "'" in r.body and '"' not in r.body else "json"
    if not points:
        absent = _no_object(r.text, r.start, r.end)
        if absent is not None:
            return r.parsed(
                True,
                fmt + "-no-objects",
                no_object=True,
                branch_span=absent[0],
                detail=f"'{absent[1]}': no such object",
            )
        if bad:
            return r.parsed(False, fmt, detail=f"{bad} object(s) without a point or a box")
        return None
    branch = _branch_after_bracket(r.text, r.start, r.end, objs[0].start())
    return r.parsed(
        True,
        fmt,
        boxes=points,
        branch_span=branch,
        detail=_detail(len(points), centres, "JSON objects"),
    )


def _tokens_as_points(r: _Region) -> Parsed | None:
    """Qwen2-VL box tokens (no point form of its own): each box's centre, 0..1000."""
    boxes = _box_tokens(r)
    if boxes is None:
        return None
    boxes.boxes = [_centre(b.coords, b.coord_spans, b.has_float) for b in boxes.boxes]
    for point, box in zip(boxes.boxes, _BOX_TOKEN_RE.finditer(r.text, r.start, r.end), strict=True):
        label = box["label"]
        point.label = label.strip() or None if label is not None else None
        point.label_span = box.span("label") if label else None
    n = len(boxes.boxes)
    boxes.detail = _detail(n, n, "Qwen2-VL box tokens")
    return boxes


def _bare_points(r: _Region) -> Parsed | None:
    """Bare 4-number lists (their centres), else ``[x, y]`` / ``(x, y)`` pairs, else
    ``x: .., y: ..`` in prose."""
    quads = list(_BARE_QUAD_RE.finditer(r.text, r.start, r.end))
    if quads:
        points = [_match_centre(m) for m in quads]
        centres = len(points)
    else:
        pairs = list(_BARE_PAIR_RE.finditer(r.text, r.start, r.end)) or list(
            _XY_TEXT_RE.finditer(r.text, r.start, r.end)
        )
        points = [_match_point(m) for m in pairs]
        centres = 0
    if not points:
        return None
    first = points[0].coord_spans[0][0]
    return r.parsed(
        True,
        "bare-list",
        boxes=points,
        branch_span=(first, first + 1),
        detail=_detail(len(points), centres, "bare lists"),
    )


POINT_FORMATS: tuple[FormatFn, ...] = (
    _point_tags,
    _tokens_as_points,
    _point_objects,
    _bare_points,
    _said_no_object,
)


def parse_points(text: str) -> Parsed:
    """Parse raw model output into points (as ``(x, y, x, y)`` boxes); never raises.

    Example:
        >>> p = parse_points('[{"point_2d": [120, 48], "label": "search button"}]')
        >>> p.ok, p.boxes[0].coords[:2], p.boxes[0].label
        (True, (120.0, 48.0), 'search button')
        >>> parse_points('<points x1="61.5" y1="40.6" alt="cat">cat</points>').boxes[0].coords[:2]
        (61.5, 40.6)
    """
    try:
        return _parse(text, POINT_FORMATS)
    except Exception as exc:  # noqa: BLE001 - a parser bug must abstain, not crash a request
        return Parsed(ok=False, fmt="error", detail=f"parser error: {type(exc).__name__}")


def parse_answer(text: str, mode: OutputMode = "box") -> Parsed:
    """Parse boxes or points, as the request asked; never raises."""
    return parse_points(text) if mode == "point" else parse_output(text)


__all__ = ["OutputMode", "POINT_FORMATS", "parse_answer", "parse_points"]
