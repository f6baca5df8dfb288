"""The `label_match` check: the box's label names the expression's target, not another object."""

from __future__ import annotations

from difflib import SequenceMatcher

from . import embed
from .context import Context, not_run, result
from .lexicon import (
    DETERMINERS,
    NON_OBJECT_NOUNS,
    UI_NOUNS,
    known,
    lemma,
    relation,
    synonyms,
)
from .nouns import PhraseInfo, analyze, words
from .policy import Policy
from .think import think_objects
from .types import CheckResult

_REL_SCORE = {"same": 1.0, "synonym": 0.9, "hypernym": 0.8}


def _names(head: str, other: str) -> bool:
    """Whether `head` names the same category as `other` (equal or synonym)."""
    return head == other or other in synonyms(head)


def _attribute_conflict(lab: PhraseInfo, expr: PhraseInfo) -> str | None:
    """A colour or size of the label that contradicts the expression's."""
    if lab.colors and expr.colors and not lab.colors & expr.colors:
        return f"colour {'/'.join(sorted(lab.colors))} vs {'/'.join(sorted(expr.colors))}"
    if lab.sizes and expr.sizes and not lab.sizes & expr.sizes:
        return f"size {'/'.join(sorted(lab.sizes))} vs {'/'.join(sorted(expr.sizes))}"
    return None


def _compound(a: str, b: str) -> bool:
    """'flagpole' ends with 'pole', 'streetlight' with 'light' (long-enough suffixes only)."""
    a, b = a.replace(" ", ""), b.replace(" ", "")
    return (len(b) >= 4 and a.endswith(b)) or (len(a) >= 4 and b.endswith(a))


def _content(text: str) -> list[str]:
    """The words of a text without determiners and punctuation."""
    return [w for w in words(text) if w[0].isalnum() and w not in DETERMINERS]


def restates(label: str, expression: str) -> bool:
    """Whether the label repeats every content word of the expression (it adds no evidence),
    one of them perhaps with its typo corrected ('closest bust on right' / 'closest bus on the
    right': the other words vouch for the short one)."""
    expr_words, label_words = set(_content(expression)), set(_content(label))
    missing = expr_words - label_words
    if not expr_words or len(missing) > 1 or (missing and len(expr_words) < 2):
        return False
    return all(
        any(
            w[0] == x[0]
            and not (known(lemma(w)) and known(lemma(x)))  # 'shirt'/'skirt': two categories
            and SequenceMatcher(None, w, x).ratio() >= 0.8
            for x in label_words
        )
        for w in missing
    )


def _names_nothing(lab: PhraseInfo, expr: PhraseInfo) -> bool:
    """Labels that name no category of the scene: 'object', 'answer', or, for an expression
    the lexicon does not know (a GUI target), the widget type ('search button')."""
    if lab.generic or lab.head is None:
        return True
    if lab.head in NON_OBJECT_NOUNS and not known(lab.head):
        return True
    return lab.head in UI_NOUNS and (expr.head is None or not known(expr.head))


def judge_label(
    label: str, expression: str, think: str | None, policy: Policy
) -> tuple[bool, float | None, str]:
    """Decide whether one label fits the expression; returns (passed, score, detail).

    The score is how strongly the label names the target: 1 restated, 0.9 synonym, 0.8
    hypernym, 0.7 compound, 0.5 no evidence either way (a generic label or expression), the
    embedding similarity when the lexicon cannot decide, 0 a contradiction.
    """
    if restates(label, expression):
        return True, 1.0, f"label '{label}' restates the expression"
    lab, expr = analyze(label), analyze(expression)
    if _names_nothing(lab, expr):
        conflict = _attribute_conflict(lab, expr)
        if conflict:
            return False, 0.0, f"label '{label}' conflicts with the expression: {conflict}"
        return True, 0.5, f"label '{label}' names no category"
    head = lab.head or ""  # _names_nothing() is False only for labels with a head
    if expr.generic or expr.head is None:
        for other in expr.other_nouns:
            if _names(head, other):
                return (
                    False,
                    0.0,
                    f"label '{label}' names '{other}', another noun of the expression",
                )
        conflict = _attribute_conflict(lab, expr)
        if conflict:
            return False, 0.0, f"label '{label}' conflicts with the expression: {conflict}"
        return True, 0.5, "the expression names no category; the label does not contradict it"
    rel = relation(head, expr.head)
    if rel in _REL_SCORE or (rel != "different" and _compound(head, expr.head)):
        conflict = _attribute_conflict(lab, expr)
        if conflict:
            return False, 0.0, f"label '{label}' conflicts with the expression: {conflict}"
        kind = rel if rel in _REL_SCORE else "compound"
        return True, _REL_SCORE.get(rel, 0.7), f"'{head}' matches '{expr.head}' ({kind})"
    for other in expr.other_nouns:
        if _names(head, other):
            return False, 0.0, f"label '{label}' names '{other}', another noun of the expression"
    for other in think_objects(think) if think else ():
        if _names(head, other) and relation(other, expr.head) not in _REL_SCORE:
            return False, 0.0, f"label '{label}' names '{other}', another object in the think trace"
    if rel == "different":
        return False, 0.0, f"label '{label}' names a '{head}', not a '{expr.head}'"
    if policy.label_embeddings:
        sim = embed.similarity(label, expr.phrase or expr.head)
        if sim is not None:
            rivals = [embed.similarity(label, o) or 0.0 for o in expr.other_nouns]
            best_rival = max(rivals, default=0.0)
            ok = sim >= policy.label_min_similarity and sim > best_rival
            return (
                ok,
                sim,
                (
                    f"embedding similarity of '{label}' and '{expr.phrase}' is "
                    f"{sim:.2f} (min {policy.label_min_similarity:g}, best other "
                    f"noun {best_rival:.2f})"
                ),
            )
    return False, 0.0, f"cannot relate label '{head}' to '{expr.head}' (not in the lexicon)"


def check_label_match(ctx: Context) -> CheckResult:
    """Every kept box's label agrees with the expression's head noun and attributes."""
    labelled = [b for b in ctx.kept_boxes() if b.raw.label]
    if not labelled:
        return not_run(ctx, "label_match", "no label")
    scores: list[float] = []
    fails: list[str] = []
    passes: list[str] = []
    for box in labelled:
        ok, score, detail = judge_label(
            box.raw.label or "", ctx.expression, ctx.parsed.think, ctx.policy
        )
        if score is not None:
            scores.append(score)
        (passes if ok else fails).append(detail)
    score_out = min(scores) if scores else None
    if fails:
        return result(ctx, "label_match", False, "; ".join(fails), score_out)
    return result(ctx, "label_match", True, "; ".join(passes), score_out)
