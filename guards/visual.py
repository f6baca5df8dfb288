"""Checks that call back into the model through a Verifier: `visual_check`, `self_consistency`."""

from __future__ import annotations

from .context import Box, Context, result
from .geometry import clamp, iou, map_boxes
from .lexicon import relation
from .nouns import analyze
from .parse import parse_output
from .types import BBox, CheckResult


def margined(bbox: BBox, margin: float, image_size: tuple[float, float]) -> BBox:
    """Widen a box by `margin` times its side on every side, clipped to the image."""
    mx = (bbox[2] - bbox[0]) * margin
    my = (bbox[3] - bbox[1]) * margin
    return clamp((bbox[0] - mx, bbox[1] - my, bbox[2] + mx, bbox[3] + my), image_size)


def question_for(expression: str) -> str:
    """The yes/no question about the head noun and its attributes: 'Is this a red circle?'."""
    info = analyze(expression)
    phrase = info.phrase if not info.generic else expression.strip()
    phrase = phrase or "the object described"
    article = "an" if phrase[:1].lower() in "aeiou" else "a"
    return f"Is this {article} {phrase}?"


def check_visual(ctx: Context) -> CheckResult:
    """Ask the model whether each cropped box shows the target; abstain below visual_min_yes."""
    if ctx.verifier is None:
        return result(ctx, "visual_check", True, "not applicable: no verifier")
    if not ctx.policy.visual_check:
        return result(ctx, "visual_check", True, "not applicable: disabled by policy")
    kept = ctx.kept_boxes()
    if not kept:
        return result(ctx, "visual_check", True, "not applicable: no boxes")
    question = question_for(ctx.expression)
    probs: list[float] = []
    for box in kept:
        crop = margined(box.bbox, ctx.policy.visual_margin, ctx.image_size)
        try:
            p = float(ctx.verifier.yes_probability(crop, question))
        except Exception as exc:  # noqa: BLE001 - a failed re-check abstains, it does not crash
            return result(ctx, "visual_check", False,
                          f"verifier error: {type(exc).__name__}: {exc}", None)
        probs.append(min(max(p, 0.0), 1.0))
    low = min(probs)
    ok = low >= ctx.policy.visual_min_yes
    op = ">=" if ok else "<"
    return result(ctx, "visual_check", ok,
                  f"P(yes) {low:.2f} {op} {ctx.policy.visual_min_yes:g} for '{question}'", low)


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
    parsed = parse_output(text)
    if not parsed.ok:
        return None
    return map_boxes(parsed.boxes, ctx.frame, ctx.image_size, ctx.model_size)


def check_self_consistency(ctx: Context) -> CheckResult:
    """Share of k sampled answers whose best box overlaps the answer with a matching label."""
    k = ctx.policy.self_consistency_k
    if ctx.verifier is None:
        return result(ctx, "self_consistency", True, "not applicable: no verifier")
    if k <= 0:
        return result(ctx, "self_consistency", True, "not applicable: disabled by policy")
    try:
        samples = list(ctx.verifier.sample_outputs(k))
    except Exception as exc:  # noqa: BLE001 - a failed re-sample abstains, it does not crash
        return result(ctx, "self_consistency", False,
                      f"verifier error: {type(exc).__name__}: {exc}", None)
    if not samples:
        return result(ctx, "self_consistency", False, "the verifier returned no samples", 0.0)
    parsed = [_sample_boxes(ctx, s) for s in samples]
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
                if iou(best.bbox, box.bbox) >= min_iou and _labels_agree(best.raw.label,
                                                                          box.raw.label):
                    hits += 1
            shares.append(hits / len(parsed))
        agree = min(shares)
        what = f"agree (IoU >= {min_iou:g}, matching label)"
    need = ctx.policy.self_consistency_min_agreement
    ok = agree >= need
    return result(ctx, "self_consistency", ok,
                  f"{agree:.0%} of {len(parsed)} samples {what}; need {need:.0%}", agree)
