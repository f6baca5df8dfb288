"""Parse raw model text into boxes, labels, the think trace and character spans.

Formats accepted (see shared/QWEN-FACTS.md): fenced JSON, bare JSON lists or single objects,
Python-literal lists with single quotes, ``<answer>`` blocks with or without ``<think>``,
Visual-RFT ``Position``/``Confidence`` lists, Qwen2-VL box tokens, bare ``[x1, y1, x2, y2]``
lists, truncated lists (repaired to their complete objects), and ``[]`` / "No Objects".

The parser scans with regular expressions rather than ``json.loads`` because it must also tolerate
truncation and single quotes, and it must keep the character span of every coordinate and label
so that token logprobs can be attributed to them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .parse_values import (
    _ANSWER_VALUE_RE,
    _BARE_BOX_RE,
    _BARE_TUPLE_RE,
    _BOX_TOKEN_RE,
    _LABEL_KEYS,
    _OBJECT_RE,
    _OPEN_OBJECT_RE,
    _PAIR_BOX_RE,
    RawBox,
    Span,
    _box_from_match,
    _is_box_key,
    _parse_object,
)

# A tag right after a quote is inside a JSON string ({"thought": "<think>...</think>"}): the
# model wrote its trace into the answer object, so it does not delimit the answer region.
_THINK_RE = re.compile(r"(?<![\"'])<think>(.*?)(?:</think>|(?=<answer>)|\Z)", re.S | re.I)
_ANSWER_RE = re.compile(r"(?<![\"'])<answer>(.*?)(?:</answer>|\Z)", re.S | re.I)
_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_MAX_NO_OBJECT_CHARS = 400
_EMPTY_LIST_RE = re.compile(r"\[\s*\]")
_NO_OBJECT_RE = re.compile(
    r"\bno\s+objects?\b|\bnone\b|\bnot\s+(?:found|present|visible)\b|\bthere\s+(?:is|are)\s+no\b"
    r"|\bdoes\s*(?:not|n't)\s+(?:exist|appear)\b|^\s*(?:null|\{\s*\})\s*$",
    re.I,
)


@dataclass(slots=True)
class Parsed:
    """The result of parsing one raw output."""

    ok: bool
    fmt: str
    boxes: list[RawBox] = field(default_factory=list)
    no_object: bool = False
    think: str | None = None
    think_span: Span | None = None
    branch_span: Span | None = None
    native_frame: str | None = None
    repaired: int = 0
    detail: str = ""


def _find_region(text: str) -> tuple[int, int, str | None, Span | None, str]:
    """Locate the answer region and the think trace; returns (start, end, think, span, kind)."""
    think: str | None = None
    think_span: Span | None = None
    start, end = 0, len(text)
    kind = ""
    m = _THINK_RE.search(text)
    if m:
        think, think_span = m.group(1), (m.start(1), m.end(1))
        start = m.end()
    else:
        close = text.find("</think>")
        if close >= 0 and "<think>" not in text:  # the chat template put <think> in the prompt
            think, think_span = text[:close], (0, close)
            start = close + len("</think>")
    a = _ANSWER_RE.search(text, start)
    if a:
        start, end, kind = a.start(1), a.end(1), "answer"
    f = _FENCE_RE.search(text, start, end)
    if f:
        start, end, kind = f.start(1), f.end(1), (kind + "+fenced").lstrip("+")
    return start, end, think, think_span, kind


def _structured(region: str) -> list[RawBox] | None:
    """Boxes of a complete JSON / Python-literal answer with nested objects, or None."""
    try:
        data = json.loads(region)
    except ValueError:
        try:
            data = ast.literal_eval(region.strip())
        except Exception:  # noqa: BLE001 - literal_eval raises many types on odd input
            return None
    items = data if isinstance(data, list) else [data]
    boxes: list[RawBox] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        keys = {str(k).lower(): v for k, v in item.items()}
        coords = next((v for k, v in keys.items() if _is_box_key(k.replace(" ", "_"))), None)
        if not (
            isinstance(coords, list)
            and len(coords) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in coords)
        ):
            return None
        label = next((keys[k] for k in _LABEL_KEYS if isinstance(keys.get(k), str)), None)
        boxes.append(
            RawBox(
                (float(coords[0]), float(coords[1]), float(coords[2]), float(coords[3])),
                label=label or None,
                has_float=any(isinstance(v, float) for v in coords),
            )
        )
    return boxes or None


def _branch_after_bracket(text: str, start: int, end: int, first: int) -> Span | None:
    """Span of the first character after the '[' that opens the answer list (object or ']')."""
    open_at = text.rfind("[", start, first) if first >= 0 else text.find("[", start, end)
    if open_at < 0:
        return (first, first + 1) if first >= 0 else None
    j = open_at + 1
    while j < end and text[j] in " \t\r\n":
        j += 1
    return (j, j + 1) if j < end else None


def parse_output(text: str) -> Parsed:
    """Parse raw model output into boxes in the model's frame; never raises.

    Example:
        >>> p = parse_output('```json\\n[{"bbox_2d": [1, 2, 30, 40], "label": "cat"}]\\n```')
        >>> p.ok, p.boxes[0].coords, p.boxes[0].label
        (True, (1.0, 2.0, 30.0, 40.0), 'cat')
    """
    try:
        return _parse(text)
    except Exception as exc:  # noqa: BLE001 - a parser bug must abstain, not crash a request
        return Parsed(ok=False, fmt="error", detail=f"parser error: {type(exc).__name__}")


def _no_object(text: str, start: int, end: int) -> tuple[Span, str] | None:
    """Where a short answer, or an answer-valued key, says there is no such object."""
    region = text[start:end]
    if len(region.strip()) <= _MAX_NO_OBJECT_CHARS:
        no = _NO_OBJECT_RE.search(region)
        if no is not None:
            return (start + no.start(), start + no.end()), no.group().strip()
    for value in _ANSWER_VALUE_RE.finditer(text, start, end):
        if value["empty"] is not None:  # {"final_answer": null}, {"answer": []}
            return value.span("empty"), value["empty"]
        if len(value["val"]) <= _MAX_NO_OBJECT_CHARS:
            no = _NO_OBJECT_RE.search(value["val"])
            if no is not None:
                at = value.start("val")
                return (at + no.start(), at + no.end()), no.group().strip()
    return None


def _parse(text: str, formats: Sequence[FormatFn] | None = None) -> Parsed:
    """The parser proper; see parse_output. `formats` are tried in order (default: boxes).

    When the answer region holds nothing usable, the whole text is searched: an unclosed
    ``<think>`` can swallow the answer, and some models write their answer before the tags.
    """
    formats = formats or BOX_FORMATS
    start, end, think, think_span, kind = _find_region(text)
    parsed = _parse_region(text, start, end, think, think_span, kind, formats)
    if parsed.ok or (start, end) == (0, len(text)):
        return parsed
    whole = _parse_region(text, 0, len(text), think, think_span, "recovered", formats)
    return whole if whole.ok else parsed


@dataclass(frozen=True, slots=True)
class _Region:
    """The answer region text[start:end], with the think trace every Parsed of it carries."""

    text: str
    start: int
    end: int
    think: str | None
    think_span: Span | None
    prefix: str  # "think:", "recovered:", ... before the format name

    @property
    def body(self) -> str:
        """The region's text."""
        return self.text[self.start : self.end]

    def parsed(self, ok: bool, fmt: str, **fields: Any) -> Parsed:
        """A Parsed of this region, its format name prefixed."""
        return Parsed(
            ok=ok, fmt=self.prefix + fmt, think=self.think, think_span=self.think_span, **fields
        )


def _parse_region(
    text: str,
    start: int,
    end: int,
    think: str | None,
    think_span: Span | None,
    kind: str,
    formats: Sequence[FormatFn],
) -> Parsed:
    """Parse the answer in text[start:end]: the first of `formats` that matches."""
    region = _Region(text, start, end, think, think_span, kind + ":" if kind else "")
    for parse in formats:
        parsed = parse(region)
        if parsed is not None:
            return parsed
    return _unparsed(region)


def _box_tokens(r: _Region) -> Parsed | None:
    """Qwen2-VL native box tokens: 0..1000 relative."""
    toks = list(_BOX_TOKEN_RE.finditer(r.text, r.start, r.end))
    if not toks:
        return None
    boxes = []
    for m in toks:
        spans = tuple(m.span(g) for g in "abcd")
        label = m.group("label")
        boxes.append(
            RawBox(
                (float(m["a"]), float(m["b"]), float(m["c"]), float(m["d"])),
                label=label.strip() or None if label is not None else None,
                coord_spans=spans,
                label_span=m.span("label") if label else None,
            )
        )
    return r.parsed(
        True,
        "qwen2-box-tokens",
        boxes=boxes,
        branch_span=(toks[0].start(), toks[0].start() + 1),
        native_frame="relative1000",
        detail=f"{len(boxes)} box token group(s)",
    )


def _objects(r: _Region) -> Parsed | None:
    """JSON or Python-literal objects (flat), tolerant of truncation."""
    text, start, end = r.text, r.start, r.end
    objs = list(_OBJECT_RE.finditer(text, start, end))
    if not objs:
        return None
    boxes = []
    rft_any = False
    bad = 0
    boxless = 0
    for m in objs:
        box, rft, malformed = _parse_object(m.group(), m.start())
        rft_any = rft_any or rft
        if box is not None:
            boxes.append(box)
        elif malformed:
            bad += 1
        else:
            boxless += 1  # {"answer": "..."} next to the boxes: nothing to salvage
    if not boxes:
        bad, boxless = bad + boxless, 0
    tail = text[objs[-1].end() : end]
    repaired = 1 if _OPEN_OBJECT_RE.search(tail) else 0
    quotes = "python-literal" if "'" in r.body and '"' not in r.body else "json"
    fmt = "visual-rft" if rft_any else quotes
    frame = "relative1000" if rft_any else None
    branch = _branch_after_bracket(text, start, end, objs[0].start())
    absent = _no_object(text, start, end) if not boxes else None
    if absent is not None:
        return r.parsed(
            True,
            fmt + "-no-objects",
            no_object=True,
            branch_span=absent[0],
            detail=f"'{absent[1]}': no such object",
        )
    if bad:
        # Nested objects ({"attributes": {...}}) defeat the flat scan: try a real parse.
        nested = _structured(r.body)
        if nested:
            return r.parsed(
                True,
                fmt + "-nested",
                boxes=nested,
                branch_span=branch,
                native_frame=frame,
                detail=f"{len(nested)} nested object(s), without token spans",
            )
        return r.parsed(False, fmt, boxes=boxes, detail=_no_box_detail(bad, r.body))
    detail = (
        f"{len(boxes)} object(s)"
        + (", repaired a truncated list" if repaired else "")
        + (f", ignored {boxless} object(s) without a box" if boxless else "")
    )
    return r.parsed(
        True,
        fmt,
        boxes=boxes,
        branch_span=branch,
        native_frame=frame,
        repaired=repaired,
        detail=detail,
    )


def _no_box_detail(bad: int, body: str) -> str:
    """Why objects gave no box; a two-number box list is a point, and the detail says so."""
    pair = _PAIR_BOX_RE.search(body)
    if pair is None:
        return f"{bad} object(s) without a 4-number box"
    return (
        f"{bad} object(s) without a 4-number box: {pair['key']} [{pair['x']}, {pair['y']}] "
        "is a point (x, y), not a box; ask with output 'point' to ground points"
    )


def _bare_boxes(r: _Region) -> Parsed | None:
    """Bare [x1, y1, x2, y2] lists, else tuples."""
    bare = list(_BARE_BOX_RE.finditer(r.text, r.start, r.end)) or list(
        _BARE_TUPLE_RE.finditer(r.text, r.start, r.end)
    )
    if not bare:
        return None
    boxes = [_box_from_match(m) for m in bare]
    return r.parsed(
        True,
        "bare-list",
        boxes=boxes,
        branch_span=(bare[0].start(), bare[0].start() + 1),
        detail=f"{len(boxes)} bare box list(s)",
    )


def _said_no_object(r: _Region) -> Parsed | None:
    """Explicit "no object" answers: an empty list, or words saying so."""
    empty = _EMPTY_LIST_RE.search(r.text, r.start, r.end)
    if empty:
        close = empty.end() - 1
        return r.parsed(
            True,
            "empty-list",
            no_object=True,
            branch_span=(close, close + 1),
            detail="empty list: no such object",
        )
    absent = _no_object(r.text, r.start, r.end)
    if absent is None:
        return None
    span, phrase = absent
    return r.parsed(
        True, "no-objects", no_object=True, branch_span=span, detail=f"'{phrase}': no such object"
    )


FormatFn = Callable[[_Region], "Parsed | None"]
BOX_FORMATS: tuple[FormatFn, ...] = (_box_tokens, _objects, _bare_boxes, _said_no_object)


def _unparsed(r: _Region) -> Parsed:
    """Nothing usable in the region: say why."""
    if _OPEN_OBJECT_RE.search(r.body):
        detail = "only an incomplete (truncated) object"
    elif r.body.strip():
        detail = "no box found in the answer"
    else:
        detail = "empty answer"
    return r.parsed(False, "unparsed", detail=detail)
