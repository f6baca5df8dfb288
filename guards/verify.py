"""verify(): parse one answer, run the registered checks in order, accept or abstain."""

from __future__ import annotations

from collections.abc import Sequence

from .confidence import check_confidence
from .context import CheckFn, Context, result
from .geometry import check_cardinality, check_geometry, clamp, map_boxes, resolve_frame
from .label import check_label_match
from .parse import Parsed, parse_output
from .policy import Policy
from .think import check_think_consistency
from .types import CheckResult, Detection, Frame, TokenLogprob, Verdict, Verifier
from .visual import check_self_consistency, check_visual

_DEFAULT_POLICY = Policy()
_FRAMES = ("pixels", "relative1000", "normalized", "auto")

# Name -> check, run in this order. Cheap checks all run so that the reasons are complete;
# the expensive ones (model calls) are skipped once a fatal check has failed.
CHECKS: dict[str, CheckFn] = {
    "geometry": check_geometry,
    "cardinality": check_cardinality,
    "label_match": check_label_match,
    "think_consistency": check_think_consistency,
    "confidence": check_confidence,
    "visual_check": check_visual,
    "self_consistency": check_self_consistency,
}
EXPENSIVE = frozenset({"visual_check", "self_consistency"})


def _size(value: Sequence[float], what: str) -> tuple[float, float]:
    """Validate a (width, height) pair."""
    w, h = (float(v) for v in value)
    if not (w > 0 and h > 0):
        raise ValueError(f"{what} must be positive, got {tuple(value)}")
    return w, h


def verify(
    output: str,
    expression: str,
    image_size: tuple[float, float],
    *,
    frame: Frame = "auto",
    model_size: tuple[float, float] | None = None,
    multiple: bool = False,
    token_logprobs: Sequence[TokenLogprob] | None = None,
    verifier: Verifier | None = None,
    policy: Policy = _DEFAULT_POLICY,
) -> Verdict:
    """Decide whether to return a grounding answer or abstain, and say why.

    `output` is the raw model text in any format of shared/QWEN-FACTS.md; boxes in the verdict
    are in original-image pixels. With ``frame="pixels"`` coordinates are absolute in the model
    frame `model_size` (Qwen2.5-VL; None = the original image); "relative1000" is 0..1000
    (Qwen2-VL, Qwen3-VL); "normalized" is 0..1; "auto" takes all-float values in [0, 1] as
    normalized, Qwen2-VL box tokens and Visual-RFT lists as relative1000, else pixels.

    Example:
        >>> v = verify('[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]',
        ...            "the red circle left of the blue square", (100, 100))
        >>> v.status, v.detections[0].bbox
        ('accepted', (10.0, 20.0, 50.0, 60.0))
        >>> verify('[{"bbox_2d": [10, 20, 50, 60], "label": "blue square"}]',
        ...        "the red circle left of the blue square", (100, 100)).reasons
        ['label_match']

    Raises ValueError only for invalid arguments (sizes, frame); never for model output.
    """
    if frame not in _FRAMES:
        raise ValueError(f"frame must be one of {_FRAMES}, got {frame!r}")
    img = _size(image_size, "image_size")
    msize = _size(model_size, "model_size") if model_size is not None else img
    if isinstance(output, str):
        parsed = parse_output(output)
    else:
        parsed, output = Parsed(ok=False, fmt="error", detail="output is not a string"), ""
    used = resolve_frame(frame, parsed)
    ctx = Context(output=output, expression=expression or "", image_size=img, frame=used,
                  model_size=msize, multiple=multiple, token_logprobs=token_logprobs,
                  verifier=verifier, policy=policy, parsed=parsed)
    ctx.boxes = map_boxes(parsed.boxes, used, img, msize)
    ctx.kept = list(range(len(ctx.boxes)))
    fmt = result(ctx, "format", parsed.ok, f"{parsed.fmt}: {parsed.detail}",
                 1.0 if parsed.ok else 0.0)
    checks: list[CheckResult] = [fmt]
    if parsed.ok:
        failed_fatal = False
        for name, fn in CHECKS.items():
            if name in EXPENSIVE and failed_fatal:
                continue
            try:
                res = fn(ctx)
            except Exception as exc:  # noqa: BLE001 - a check bug abstains, never crashes
                res = result(ctx, name, False, f"check error: {type(exc).__name__}: {exc}")
            checks.append(res)
            failed_fatal = failed_fatal or (not res.passed and res.fatal)
    return _verdict(ctx, checks)


def _verdict(ctx: Context, checks: list[CheckResult]) -> Verdict:
    """Assemble the Verdict from the context and the check results."""
    reasons = [c.name for c in checks if not c.passed and c.fatal]
    candidates = [
        Detection(bbox=clamp(b.bbox, ctx.image_size), label=b.raw.label,
                  confidence=b.confidence if b.confidence is not None
                  else b.raw.stated_confidence)
        for b in ctx.boxes
    ]
    detections: list[Detection] = []
    if not reasons:
        # Verified boxes are returned as the model gave them (mapped and clamped).
        detections = [candidates[i] for i in ctx.kept]
    return Verdict(
        status="abstained" if reasons else "accepted",
        detections=detections,
        candidates=candidates,
        checks=checks,
        reasons=reasons,
        think=ctx.parsed.think.strip() if ctx.parsed.think else None,
        frame=ctx.frame,
    )
