"""The checks decided from model-backed evidence: `visual_check` and `self_consistency`.

The evidence (P(yes) per crop, k sampled answers) is gathered by the caller between
`prepare()` and `Plan.finish()`; these checks only read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from .context import Box, Context, not_run, result
from .geometry import clamp, iou, map_boxes
from .lexicon import lemma, relation
from .nouns import analyze
from .points import parse_answer
from .types import BBox, CheckResult


@dataclass(frozen=True, slots=True)
class CropQuestion:
    """A yes/no question about one crop of the original image.

    `bbox` is in original pixels, already widened by the policy's margin and clipped to the
    image: crop exactly that region. `question` is bare ("Is this a red circle?"); whoever asks
    the model adds its own answer-format instruction.
    """

    bbox: BBox
    question: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """The model's answers to a plan: P(yes) per crop (in the plan's order) and the samples."""

    yes_probabilities: tuple[float, ...] = ()
    samples: tuple[str, ...] = ()


def margined(bbox: BBox, margin: float, image_size: tuple[float, float]) -> BBox:
    """Widen a box by `margin` times its side on every side, clipped to the image."""
    mx = (bbox[2] - bbox[0]) * margin
    my = (bbox[3] - bbox[1]) * margin
    return clamp((bbox[0] - mx, bbox[1] - my, bbox[2] + mx, bbox[3] + my), image_size)


def point_crop(x: float, y: float, frac: float, image_size: tuple[float, float]) -> BBox:
    """The square crop of side `frac` times the image's shorter side centred on (x, y), clipped.

    Example:
        >>> point_crop(50, 50, 0.2, (200, 100))
        (40.0, 40.0, 60.0, 60.0)
    """
    half = frac * min(image_size) / 2
    return clamp((x - half, y - half, x + half, y + half), image_size)


def question_for(expression: str) -> str:
    """The yes/no question about the head noun and its attributes: 'Is this a red circle?'.

    Each crop shows one object, so a plural head is asked in the singular.

    Example:
        >>> question_for("the two red circles")
        'Is this a red circle?'
    """
    info = analyze(expression)
    phrase = info.phrase if not info.generic else expression.strip()
    tokens = phrase.split()
    if not info.generic and tokens and info.head is not None:
        singular = lemma(tokens[-1])
        if singular != tokens[-1] and singular == info.head.split()[-1]:
            phrase = " ".join([*tokens[:-1], singular])
    phrase = phrase or "the object described"
    article = "an" if phrase[:1].lower() in "aeiou" else "a"
    return f"Is this {article} {phrase}?"


def crop_questions(ctx: Context) -> tuple[CropQuestion, ...]:
    """One yes/no question per kept box, or none when the policy turns the visual check off."""
    if not ctx.policy.visual_check:
        return ()
    question = question_for(ctx.expression)
    margin = ctx.policy.visual_margin
    if ctx.points:
        frac = ctx.policy.point_crop_frac
        return tuple(
            CropQuestion(point_crop(box.bbox[0], box.bbox[1], frac, ctx.image_size), question)
            for box in ctx.kept_boxes()
        )
    return tuple(
        CropQuestion(margined(box.bbox, margin, ctx.image_size), question)
        for box in ctx.kept_boxes()
    )


def check_visual(
    ctx: Context, crops: Sequence[CropQuestion], evidence: Evidence | None
) -> CheckResult:
    """The model's P(yes) for each cropped box; abstain when the lowest is below visual_min_yes."""
    if not ctx.policy.visual_check:
        return not_run(ctx, "visual_check", "disabled by policy")
    if not crops:
        return not_run(ctx, "visual_check", "no boxes")
    if evidence is None:
        return not_run(ctx, "visual_check", "no verifier")
    probs = [min(max(float(p), 0.0), 1.0) for p in evidence.yes_probabilities]
    low = min(probs)
    worst = crops[probs.index(low)].question
    ok = low >= ctx.policy.visual_min_yes
    op = ">=" if ok else "<"
    return result(
        ctx,
        "visual_check",
        ok,
        f"P(yes) {low:.2f} {op} {ctx.policy.visual_min_yes:g} for '{worst}'",
        low,
    )


def _labels_agree(a: str | None, b: str | None) -> bool:
    """Labels agree unless both name known, different categories."""
    if not a or not b:
        return True
    ha, hb = analyze(a).head, analyze(b).head
    if ha is None or hb is None:
        return True
    if relation(ha, hb) in ("same", "synonym", "hypernym"):
        return True
    ca, cb = ha.replace(" ", ""), hb.replace(" ", "")
    return ca in cb or cb in ca


def _sample_boxes(ctx: Context, text: str) -> list[Box] | None:
    """A sample's boxes in original pixels (same frame as the answer); None if unparseable."""
    parsed = parse_answer(text, ctx.mode)
    if not parsed.ok:
        return None
    return map_boxes(parsed.boxes, ctx.frame, ctx.image_size, ctx.model_size)


def check_self_consistency(
    ctx: Context, crops: Sequence[CropQuestion], evidence: Evidence | None
) -> CheckResult:
    """Share of k sampled answers whose best box overlaps the answer with a matching label."""
    if ctx.policy.self_consistency_k <= 0:
        return not_run(ctx, "self_consistency", "disabled by policy")
    if evidence is None:
        return not_run(ctx, "self_consistency", "no verifier")
    samples = evidence.samples
    if not samples:
        return result(ctx, "self_consistency", False, "the verifier returned no samples", 0.0)
    parsed = [_sample_boxes(ctx, s) for s in samples]
    if ctx.points and ctx.kept_boxes():
        return _point_consistency(ctx, parsed)
    kept = ctx.kept_boxes()
    min_iou = ctx.policy.self_consistency_iou
    if not kept:
        agree = sum(1 for p in parsed if p is not None and not p) / len(parsed)
        what = "also answer no object"
    else:
        shares = []
        for box in kept:
            hits = 0
            for boxes in parsed:
                if not boxes:
                    continue
                best = max(boxes, key=lambda b: iou(b.bbox, box.bbox))  # noqa: B023
                if iou(best.bbox, box.bbox) >= min_iou and _labels_agree(
                    best.raw.label, box.raw.label
                ):
                    hits += 1
            shares.append(hits / len(parsed))
        agree = min(shares)
        what = f"agree (IoU >= {min_iou:g}, matching label)"
    need = ctx.policy.self_consistency_min_agreement
    ok = agree >= need
    return result(
        ctx,
        "self_consistency",
        ok,
        f"{agree:.0%} of {len(parsed)} samples {what}; need {need:.0%}",
        agree,
    )


def _point_consistency(ctx: Context, parsed: list[list[Box] | None]) -> CheckResult:
    """Share of samples whose nearest point lies within the policy's radius of each answer
    point (with a matching label), and the spread: the median distance of those nearest."""
    radius = ctx.point_radius()
    shares: list[float] = []
    spreads: list[float] = []
    for box in ctx.kept_boxes():
        hits = 0
        for points in parsed:
            if not points:
                continue
            near = min(points, key=lambda p: math.dist(p.bbox[:2], box.bbox[:2]))  # noqa: B023
            gap = math.dist(near.bbox[:2], box.bbox[:2])
            spreads.append(gap)
            hits += gap <= radius and _labels_agree(near.raw.label, box.raw.label)
        shares.append(hits / len(parsed))
    agree = min(shares)
    need = ctx.policy.self_consistency_min_agreement
    spread = f"{median(spreads):.1f} px" if spreads else "none (no sample has a point)"
    return result(
        ctx,
        "self_consistency",
        agree >= need,
        f"{agree:.0%} of {len(parsed)} samples point within {radius:.1f} px "
        f"(matching label); spread (median distance) {spread}; need {need:.0%}",
        agree,
    )
