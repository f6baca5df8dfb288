"""Think-trace analysis and the `think_consistency` check.

The trace is read clause by clause: a clause either selects an entity ("The target is the red
circle", "It is the metal pole", "the man is the target") or concludes the target is absent
("There is no yellow hexagon", "I cannot find it"). The last such clause is the trace's decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .context import Context, not_run, result
from .geometry import iou, map_boxes
from .lexicon import BOUNDARY_WORDS, ING_NOUNS, known, relation
from .nouns import PhraseInfo, analyze, mentioned_heads
from .nouns import words as word_tokens
from .parse_values import _BARE_BOX_RE, _BOX_TOKEN_RE, RawBox
from .types import BBox, CheckResult

# Sentences and comma clauses first (one fast split), then connectives when present.
_SENTENCE_RE = re.compile(r"[.!?;:\n]+\s*|,\s*")
_CONNECTIVE_RE = re.compile(r"\s+(?:so|but|therefore|thus|hence)\s+")
_CONNECTIVES = frozenset({"so", "but", "therefore", "thus", "hence"})
_NP = r"(?P<np>(?:a|an|the)\s+.+)"
_SELECT_RES = (
    re.compile(
        r"\b(?:target|answer|referred object|object (?:described|referred to|in question)|"
        r"correct (?:one|object)|one (?:described|referred to|meant))\s+"
        r"(?:is|would be|should be|must be|seems to be|appears to be)\s+" + _NP
    ),
    re.compile(
        r"(?:^|\b(?:so|therefore|thus|hence|then)\s+)(?:it|this|that)(?:'s|\s+is|\s+must be|"
        r"\s+should be|\s+would be)\s+" + _NP
    ),
    re.compile(r"\bi(?:'ll|\s+will|\s+would)?\s+(?:select|choose|pick|go with)\s+" + _NP),
    re.compile(
        r"(?P<np>(?:a|an|the)\s+.+?)\s+(?:is|matches)\s+the\s+(?:target|description|"
        r"expression|referred object|one described)\b"
    ),
)
# Cheap word filters: most clauses select nothing and deny nothing.
_SELECT_HINTS = frozenset(
    {
        "target",
        "answer",
        "object",
        "one",
        "it",
        "it's",
        "this",
        "that",
        "select",
        "choose",
        "pick",
        "go",
        "description",
        "expression",
        "correct",
    }
)
_ABSENT_HINTS = frozenset(
    {
        "no",
        "not",
        "cannot",
        "can't",
        "couldn't",
        "isn't",
        "aren't",
        "doesn't",
        "don't",
        "didn't",
        "absent",
        "missing",
        "unable",
        "none",
        "nothing",
    }
)
# Absence: the denied phrase follows ("there is no umpire") or precedes ("the umpire is not
# visible") the negation.
_DENY_AFTER_RE = re.compile(
    r"\bthere (?:is|are) no\b|\bno (?:such|matching)\b|"
    r"\b(?:cannot|can't|can not|could not|couldn't|unable to|don't|do not|did not|didn't) "
    r"(?:find|see|locate|identify|spot)\b|\bnothing (?:that )?matches\b|\bnone of the\b"
)
_DENY_BEFORE_RE = re.compile(
    r"\b(?:is|are)\s+(?:absent|missing)\b|"
    r"\b(?:isn't|aren't|is not|are not)\s+(?:present|visible|found|in the image|in the picture|"
    r"there)\b|\bdoes(?:n't| not) (?:exist|appear)\b|\bnot present\b"
)
# The trace finds nothing the expression could mean ("no specific object labeled as 'yep'").
_UNCLEAR_RE = re.compile(
    r"\bno (?:specific|particular|obvious|identifiable) (?:object|item|area|element|feature|"
    r"thing|region|option|part)s?\b|\b(?:not clear|no clear indication of) what\b|"
    r"\bdoes(?:n't| not) (?:seem to |appear to )?(?:refer|correspond) to (?:any|a specific|"
    r"a particular)\b"
)
# Wrappers around a denied phrase that do not change what is denied.
_DENIAL_FILLER_RE = re.compile(
    r"^(?:(?:clear|visible|clearly|obvious|apparent|such|any)\s+)*"
    r"(?:(?:indication|sign|evidence|trace|mention) of\s+)?|"
    r"\s+(?:(?:visible|present|shown|here|there|anywhere|at all|clearly|exists?|in (?:the|this) "
    r"(?:image|picture|photo|frame|scene)(?: itself)?)\s*)+$"
)
_PRONOUNS = frozenset({"it", "one", "them", "any", "anything", "such", "this", "that", "target"})
# Absence of *another* instance ("no other man to his left") or of a *part* ("can't see its
# entire back end") says nothing about the target.
_QUALIFYING_WORDS = frozenset(
    {
        "other",
        "another",
        "additional",
        "else",
        "more",
        "second",
        "entire",
        "whole",
        "full",
        "fully",
        "complete",
        "completely",
    }
)
_MAX_DENIED_WORDS = 5


@dataclass(frozen=True, slots=True)
class ThinkInfo:
    """What the trace mentions and what it finally decides."""

    decision: str | None  # "select" | "absent" | None
    entity: PhraseInfo | None
    clause: str
    boxes: tuple[RawBox, ...]


def _denied_phrase(clause: str) -> tuple[str, bool] | None:
    """The phrase an absence clause denies, without fillers, and whether it followed the
    negation ("there is no X") rather than preceded it ("X is not visible"); None for no
    denial."""
    after = _DENY_AFTER_RE.search(clause)
    if after is not None:
        phrase = clause[after.end() :]
    else:
        before = _DENY_BEFORE_RE.search(clause)
        if before is None:
            return None
        phrase = clause[: before.start()]
        phrase = phrase.rsplit(" that ", 1)[-1].rsplit(" there ", 1)[-1]
    return _DENIAL_FILLER_RE.sub("", phrase.strip(" \"'")).strip(" \"'"), after is not None


def _denies_target(clause: str, expr: PhraseInfo) -> bool:
    """Whether an absence clause denies the target itself.

    Only a bare noun phrase naming the target (or a pronoun for it) counts: "there is no
    visible umpire", "I cannot find it". A qualified denial ("no bus in the background on the
    right", "no person sitting in it", "which is not visible") rejects a detail of the
    description, or another object, and the model then answers its best match; neither does
    the absence of *another* instance ("no other man to his left").
    """
    denied = _denied_phrase(clause)
    if denied is None:
        return False
    phrase, after = denied
    toks = word_tokens(phrase)
    if not toks:  # "nothing matches", "no such": the whole description; "that isn't there": ?
        return after
    if len(toks) == 1 and toks[0] in _PRONOUNS:
        return True
    if (
        len(toks) > _MAX_DENIED_WORDS
        or not _QUALIFYING_WORDS.isdisjoint(toks)
        or any(t in BOUNDARY_WORDS or not t[0].isalnum() for t in toks)
        or any(len(t) > 4 and t.endswith(("ing", "ed")) and t not in ING_NOUNS for t in toks)
    ):
        return False
    if expr.generic or expr.head is None:
        return True
    info = analyze(phrase)
    if info.head is None or relation(info.head, expr.head) not in ("same", "synonym", "hypernym"):
        return False
    # "There is no red hexagon" says nothing about "the yellow hexagon".
    return not (info.colors and expr.colors and not info.colors & expr.colors)


def _unclear(clause: str, expr: PhraseInfo) -> bool:
    """Whether the clause finds nothing the expression could mean. "Not clear what you mean by
    'left most person'" about an expression naming a known category is doubt over *which* one
    (the model then picks one), not absence."""
    m = _UNCLEAR_RE.search(clause)
    if m is None:
        return False
    doubt = m.group().startswith(("not clear", "no clear"))
    return not (doubt and expr.head is not None and known(expr.head))


def _clauses(low: str) -> list[str]:
    """Split a lower-cased trace into clauses."""
    out: list[str] = []
    for part in _SENTENCE_RE.split(low):
        if not part:
            continue
        if _CONNECTIVES.isdisjoint(part.split()):
            out.append(part)
        else:
            out.extend(p for p in _CONNECTIVE_RE.split(part) if p)
    return out


@lru_cache(maxsize=256)
def analyze_think(think: str, expression: str) -> ThinkInfo:
    """The trace's final decision and the boxes it quotes."""
    expr = analyze(expression)
    low = think.lower()
    decision: str | None = None
    entity: PhraseInfo | None = None
    last_clause = ""
    for clause in _clauses(low):
        words = set(clause.split())
        selected = False
        if words & _SELECT_HINTS:
            for pat in _SELECT_RES:
                m = pat.search(clause)
                if m:
                    info = analyze(m.group("np"))
                    if info.head is not None and not info.generic:
                        decision, entity, last_clause = "select", info, clause
                        selected = True
                        break
        if not selected and (
            words & _ABSENT_HINTS and _denies_target(clause, expr) or _unclear(clause, expr)
        ):
            decision, entity, last_clause = "absent", None, clause
    boxes: list[RawBox] = []
    if "[" in think:
        boxes += [
            RawBox((float(m[1]), float(m[2]), float(m[3]), float(m[4])), has_float="." in m.group())
            for m in _BARE_BOX_RE.finditer(think)
        ]
    if "<|box_start|>" in think:
        boxes += [
            RawBox((float(m["a"]), float(m["b"]), float(m["c"]), float(m["d"])))
            for m in _BOX_TOKEN_RE.finditer(think)
        ]
    return ThinkInfo(decision, entity, last_clause.strip(), tuple(boxes))


@lru_cache(maxsize=256)
def think_objects(think: str) -> frozenset[str]:
    """Head nouns of the objects a trace mentions (computed only when a label needs them)."""
    return frozenset(h for h, _ in mentioned_heads(think.lower()))


def think_info(ctx: Context) -> ThinkInfo | None:
    """The analysed think trace of this call (None without one)."""
    think = ctx.parsed.think
    if not think or not think.strip():
        return None
    if ctx._think is None:
        ctx._think = analyze_think(think, ctx.expression)
    return ctx._think  # type: ignore[return-value]


def _entity_problem(entity: PhraseInfo, expr: PhraseInfo, labels: list[str]) -> str | None:
    """Why the selected entity disagrees with the expression or the answer's labels."""
    head = entity.head or ""
    if not expr.generic and expr.head is not None:
        rel = relation(head, expr.head)
        if rel == "different" or (rel == "unknown" and head in expr.other_nouns):
            return f"the trace selects '{entity.phrase}', not a '{expr.head}'"
        if rel != "unknown" and entity.colors and expr.colors and not entity.colors & expr.colors:
            return (
                f"the trace selects '{entity.phrase}', the expression asks for "
                f"{'/'.join(sorted(expr.colors))}"
            )
    for label in labels:
        lab = analyze(label)
        if lab.head and not lab.generic and relation(head, lab.head) == "different":
            return f"the trace selects '{entity.phrase}' but the answer is labelled '{label}'"
    return None


def _inside(point: BBox, box: BBox) -> bool:
    """Whether a point, held as (x, y, x, y), lies in a box (edges included)."""
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def check_think_consistency(ctx: Context) -> CheckResult:
    """The trace's decision, entity and quoted boxes agree with the answer."""
    info = think_info(ctx)
    if info is None:
        return not_run(ctx, "think_consistency", "no think trace")
    expr = ctx.expr_info()
    answered = bool(ctx.parsed.boxes)
    problems: list[str] = []
    if info.decision == "absent" and answered:
        problems.append(
            f"the trace concludes the target is absent ('{info.clause}') "
            f"but {'a point' if ctx.points else 'a box'} is returned"
        )
    if info.decision == "select" and info.entity is not None:
        if not answered:
            problems.append(f"the trace selects '{info.entity.phrase}' but the answer is empty")
        else:
            labels = [b.raw.label for b in ctx.kept_boxes() if b.raw.label]
            why = _entity_problem(info.entity, expr, labels)
            if why:
                problems.append(why)
    score: float | None = None
    kept = ctx.kept_boxes()
    if info.boxes and kept and ctx.points:
        quoted = map_boxes(list(info.boxes), ctx.frame, ctx.image_size, ctx.model_size)
        score = sum(any(_inside(k.bbox, q.bbox) for q in quoted) for k in kept) / len(kept)
        if score < 1.0:
            problems.append("a point lies outside every box quoted in the trace")
    elif info.boxes and kept:
        quoted = map_boxes(list(info.boxes), ctx.frame, ctx.image_size, ctx.model_size)
        score = min(max(iou(k.bbox, q.bbox) for q in quoted) for k in kept)
        if score < ctx.policy.think_min_iou:
            problems.append(
                f"boxes quoted in the trace disagree with the answer "
                f"(IoU {score:.2f} < {ctx.policy.think_min_iou:g})"
            )
    if problems:
        return result(
            ctx, "think_consistency", False, "; ".join(problems), 0.0 if score is None else score
        )
    what = {
        "select": f"selects '{info.entity.phrase if info.entity else ''}'",
        "absent": "concludes the target is absent",
        None: "makes no explicit decision",
    }
    return result(
        ctx,
        "think_consistency",
        True,
        f"the trace {what[info.decision]}",
        1.0 if score is None else score,
    )
