"""The values inside a model's answer: numbers, keys, labels, one object's box, with spans.

`parse` finds the answer region and picks the format; this module reads what a format holds:
coordinate lists and their character spans, the keys real models use for boxes, corners, edges,
labels and confidences, and one JSON / Python-literal object's box.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

Span = tuple[int, int]

# A label the model wrapped in tags, e.g. "<answer>red car</answer>".
_TAGGED_RE = re.compile(r"^\s*<(think|answer)>(.*?)(?:</\1>)?\s*$", re.S | re.I)

_NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM)
_BOX_TOKEN_RE = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>\s*)?"
    r"<\|box_start\|>\s*\(\s*(?P<a>" + _NUM + r")\s*,\s*(?P<b>" + _NUM + r")\s*\)\s*,?\s*"
    r"\(\s*(?P<c>" + _NUM + r")\s*,\s*(?P<d>" + _NUM + r")\s*\)\s*<\|box_end\|>",
    re.S,
)
_OBJECT_RE = re.compile(r"\{[^{}]*\}")
_OPEN_OBJECT_RE = re.compile(r"\{[^{}]*\Z")
# Keys may be escaped ({\"bbox_2d\": ...}) when the answer is JSON inside a JSON string.
_KV_RE = re.compile(
    r"""\\?["']?(?P<key>[A-Za-z_][A-Za-z0-9_ ]*?)\\?["']?\s*:\s*"""
    r"""(?P<val>\[[^\[\]]*\]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|""" + _NUM + r"""|null|None)"""
)
_BARE_BOX_RE = re.compile(
    r"\[\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*\]"
)
# A box written as a tuple "(x1, y1, x2, y2)" or as two corners "(x1, y1), (x2, y2)".
_BARE_TUPLE_RE = re.compile(
    r"\(\s*("
    + _NUM
    + r")\s*,\s*("
    + _NUM
    + r")\s*\)?\s*,?\s*\(?\s*("
    + _NUM
    + r")\s*,\s*("
    + _NUM
    + r")\s*\)"
)
# A box key holding two numbers: a point written where a box was asked for.
_PAIR_BOX_RE = re.compile(
    r"""["']?(?P<key>[A-Za-z_]*box[A-Za-z_0-9]*)["']?\s*:\s*\[\s*(?P<x>"""
    + _NUM
    + r""")\s*,\s*(?P<y>"""
    + _NUM
    + r""")\s*\]""",
    re.I,
)
# String values that carry the answer, e.g. {"final_answer": "There is no such button."}.
_ANSWER_VALUE_RE = re.compile(
    r"""["'][a-z_ ]*answer["']\s*:\s*(?:(?P<q>["'])(?P<val>(?:(?!(?P=q))[^\\]|\\.)*)(?P=q)"""
    r"""|(?P<empty>null|None|\[\s*\]|\{\s*\}))""",
    re.I,
)

_BBOX_KEYS = frozenset(
    {
        "bbox_2d",
        "bbox",
        "box",
        "box_2d",
        "position",
        "bbox_xyxy",
        "bounding_box",
        "coordinates",
        "coords",
        "xyxy",
    }
)
_CORNER_KEYS = ("top_left", "bottom_right")
# {"x1": .., "y1": .., "x2": .., "y2": ..} or {"x": .., "y": .., "width": .., "height": ..}.
_EDGE_KEYS = {
    "x1": "x1",
    "y1": "y1",
    "x2": "x2",
    "y2": "y2",
    "x": "x1",
    "y": "y1",
    "left": "x1",
    "top": "y1",
    "right": "x2",
    "bottom": "y2",
    "width": "w",
    "w": "w",
    "height": "h",
    "h": "h",
}
_LABEL_KEYS = frozenset({"label", "name", "category", "class", "object", "text", "description"})
_CONF_KEYS = frozenset({"confidence", "score", "conf", "probability"})


@dataclass(slots=True)
class RawBox:
    """One parsed box in the model's coordinate frame, with the character spans it came from."""

    coords: tuple[float, float, float, float]
    label: str | None = None
    stated_confidence: float | None = None
    coord_spans: tuple[Span, ...] = ()
    label_span: Span | None = None
    has_float: bool = False


def _unquote(raw: str) -> str:
    """Decode a JSON or Python string literal, tolerating bad escapes."""
    try:
        val = json.loads(raw) if raw[0] == '"' else ast.literal_eval(raw)
        return str(val)
    except (ValueError, SyntaxError):
        return raw[1:-1]


def _numbers(val: str, base: int) -> tuple[list[float], list[Span], bool]:
    """Numbers in a list literal with their absolute spans and whether any is a float."""
    nums: list[float] = []
    spans: list[Span] = []
    has_float = False
    for m in _NUM_RE.finditer(val):
        lit = m.group()
        nums.append(float(lit))
        spans.append((base + m.start(), base + m.end()))
        has_float = has_float or "." in lit or "e" in lit or "E" in lit
    return nums, spans, has_float


def _is_box_key(key: str) -> bool:
    """Keys that hold a box: bbox_2d, bounding_box_2d, box_coordinates, position, ..."""
    return key in _BBOX_KEYS or "box" in key or key.endswith("coordinates")


def _label_text(raw: str) -> str | None:
    """A label without <answer> tags; None for a think trace written into the label."""
    text = _unquote(raw).strip()
    tagged = _TAGGED_RE.match(text)
    if tagged:
        return None if tagged.group(1).lower() == "think" else tagged.group(2).strip() or None
    return text or None


def _box_from_match(m: re.Match[str], base: int = 0) -> RawBox:
    """The box of a bare list or tuple match (groups 1-4), spans shifted by `base`."""
    lits = [m.group(i) for i in range(1, 5)]
    return RawBox(
        (float(lits[0]), float(lits[1]), float(lits[2]), float(lits[3])),
        coord_spans=tuple((base + m.start(i), base + m.end(i)) for i in range(1, 5)),
        has_float=any("." in x or "e" in x.lower() for x in lits),
    )


def _box_from_edges(edges: dict[str, tuple[float, Span]]) -> RawBox | None:
    """A box from numeric corner keys, or from a corner and a width and height."""
    if not {"x1", "y1"} <= edges.keys():
        return None
    (x1, sx1), (y1, sy1) = edges["x1"], edges["y1"]
    if {"x2", "y2"} <= edges.keys():
        (x2, sx2), (y2, sy2) = edges["x2"], edges["y2"]
    elif {"w", "h"} <= edges.keys():
        (w, sx2), (h, sy2) = edges["w"], edges["h"]
        x2, y2 = x1 + w, y1 + h
    else:
        return None
    return RawBox(
        (x1, y1, x2, y2),
        coord_spans=(sx1, sy1, sx2, sy2),
        has_float=any(v != int(v) for v in (x1, y1, x2, y2)),
    )


def _box_in_string(val: str, base: int) -> RawBox | None:
    """A 4-number list or tuple quoted inside a string value ('"answer": "[1, 2, 3, 4]"')."""
    m = _BARE_BOX_RE.search(val) or _BARE_TUPLE_RE.search(val)
    return None if m is None else _box_from_match(m, base)


@dataclass
class ObjectFields:
    """What one flat ``{...}`` object says, key by key: the raw material of a box or a point."""

    coords: list[tuple[str, list[float], list[Span], bool]] = field(default_factory=list)
    corners: dict[str, tuple[list[float], list[Span], bool]] = field(default_factory=dict)
    edges: dict[str, tuple[float, Span]] = field(default_factory=dict)
    label: str | None = None
    label_span: Span | None = None
    conf: float | None = None
    strings: list[tuple[str, int]] = field(default_factory=list)  # other quoted values, in order

    def attach(self, found: RawBox) -> None:
        """Give the box or point this object's label and stated confidence."""
        found.label = self.label or None
        found.label_span = self.label_span if self.label else None
        if self.conf is not None and 0.0 <= self.conf <= 1.0:
            found.stated_confidence = self.conf


def scan_object(obj: str, base: int, coord_key: Callable[[str], bool]) -> ObjectFields:
    """Sort one object's key/value pairs: lists under `coord_key` keys, corners, edges, the
    first label, a confidence and every other quoted value (the first label key wins)."""
    fields = ObjectFields()
    for kv in _KV_RE.finditer(obj):
        key = kv.group("key").strip().lower().replace(" ", "_")
        val = kv.group("val")
        vstart = base + kv.start("val")
        if key in _CORNER_KEYS and val.startswith("["):
            nums, spans, has_float = _numbers(val, vstart)
            if len(nums) == 2:
                fields.corners[key] = (nums, spans, has_float)
        elif coord_key(key) and val.startswith("["):
            fields.coords.append((key, *_numbers(val, vstart)))
        elif key in _LABEL_KEYS and val[0] in "\"'" and fields.label is None:
            fields.label = _label_text(val)
            fields.label_span = (vstart + 1, vstart + len(val) - 1) if fields.label else None
        elif key in _CONF_KEYS and val[0] not in "\"'[nN":
            fields.conf = float(val)
        elif key in _EDGE_KEYS and val[0] not in "\"'[nN":
            fields.edges[_EDGE_KEYS[key]] = (float(val), (vstart, vstart + len(val)))
        elif val[0] in "\"'":
            fields.strings.append((val, vstart))
    return fields


def _parse_object(obj: str, base: int) -> tuple[RawBox | None, bool, bool]:
    """Parse one flat ``{...}`` object.

    Returns (box or None, whether it was Visual-RFT, whether it had a box key whose value is not
    a 4-number list). A box quoted in another key's string value is used when no key holds one.
    """
    fields = scan_object(obj, base, _is_box_key)
    box: RawBox | None = None
    rft = malformed = False
    for key, nums, spans, has_float in fields.coords:
        if len(nums) == 4 and box is None:
            box = RawBox(
                (nums[0], nums[1], nums[2], nums[3]), coord_spans=tuple(spans), has_float=has_float
            )
        malformed = malformed or len(nums) != 4
        rft = rft or key == "position"
    if box is None and len(fields.corners) == 2:
        (a, sa, fa), (b, sb, fb) = fields.corners["top_left"], fields.corners["bottom_right"]
        box = RawBox((a[0], a[1], b[0], b[1]), coord_spans=(*sa, *sb), has_float=fa or fb)
    if box is None:
        box = _box_from_edges(fields.edges)
    if box is None:
        quoted = (_box_in_string(val, start) for val, start in fields.strings)
        box = next((b for b in quoted if b is not None), None)
    if box is not None:
        fields.attach(box)
    return box, rft, malformed and box is None
