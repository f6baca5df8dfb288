"""Verification in two pure phases: prepare() runs the cheap checks, Plan.finish() decides.

Between the two, the caller gathers the model-backed evidence the plan asks for (P(yes) for
crops, k sampled answers) however it likes: the server awaits it on its event loop, all crops
of a request in one batch; verify() asks a synchronous Verifier. Guards never do that I/O, so
an overloaded or dead model is the caller's error to report, never a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from .confidence import check_confidence
from .context import Box, CheckFn, Context, result
from .faults import GuardFault
from .geometry import check_cardinality, check_geometry, clamp, map_boxes, resolve_frame
from .label import check_label_match
from .parse import Parsed
from .points import parse_answer
from .policy import Policy
from .think import check_think_consistency
from .types import CheckResult, Detection, Frame, OutputMode, TokenLogprob, Verdict
from .visual import CropQuestion, Evidence, check_self_consistency, check_visual, crop_questions

DEFAULT_POLICY = Policy()
FRAMES = ("pixels", "relative1000", "normalized", "auto")
MODES = ("box", "point")


# Name -> check, run in this order by prepare(). All run, so that the reasons are complete.
CHECKS: dict[str, CheckFn] = {
    "geometry": check_geometry,
    "cardinality": check_cardinality,
    "label_match": check_label_match,
    "think_consistency": check_think_consistency,
    "confidence": check_confidence,
}
# Name -> check decided from the evidence, run by Plan.finish() in this order.
EvidenceCheckFn = Callable[[Context, Sequence[CropQuestion], "Evidence | None"], CheckResult]
EVIDENCE_CHECKS: dict[str, EvidenceCheckFn] = {
    "visual_check": check_visual,
    "self_consistency": check_self_consistency,
}


class Plan:
    """The cheap checks' results and the evidence still needed to decide.

    `crops` and `samples` say what to ask the model; both are empty once a fatal check has
    failed (no model call can rescue the answer) or when the policy turns them off.

    Example:
        >>> plan = prepare('[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]',
        ...                "the red circle", (100, 100), policy=Policy(self_consistency_k=2))
        >>> [c.question for c in plan.crops], plan.samples
        (['Is this a red circle?'], 2)
        >>> plan.finish(Evidence(yes_probabilities=(0.9,), samples=(
        ...     '[{"bbox_2d": [11, 20, 50, 61], "label": "circle"}]', "[]"))).status
        'accepted'
    """

    __slots__ = ("ctx", "checks", "crops", "samples", "_decided")

    def __init__(self, ctx: Context, checks: list[CheckResult], decided: bool) -> None:
        """Record the cheap results; `decided` = a fatal check failed, no evidence can help."""
        self.ctx = ctx
        self.checks = checks
        self._decided = decided
        self.crops: tuple[CropQuestion, ...] = () if decided else crop_questions(ctx)
        self.samples: int = 0 if decided else ctx.policy.self_consistency_k

    @property
    def needs_evidence(self) -> bool:
        """True when finish() wants model answers (crops or samples)."""
        return bool(self.crops) or self.samples > 0

    def finish(self, evidence: Evidence | None = None) -> Verdict:
        """Decide with the evidence; None = none available (the evidence checks do not apply).

        Raises ValueError when the evidence does not answer every crop of the plan.
        """
        checks = list(self.checks)
        if not self._decided:
            if evidence is not None and len(evidence.yes_probabilities) != len(self.crops):
                raise ValueError(
                    f"the plan has {len(self.crops)} crops but the evidence "
                    f"{len(evidence.yes_probabilities)} answers"
                )
            for name, fn in EVIDENCE_CHECKS.items():
                run = partial(fn, self.ctx, self.crops, evidence)
                checks.append(_guarded(self.ctx, name, run))
        return _verdict(self.ctx, checks)


def _size(value: Sequence[float], what: str) -> tuple[float, float]:
    """Validate a (width, height) pair."""
    w, h = (float(v) for v in value)
    if not (w > 0 and h > 0):
        raise ValueError(f"{what} must be positive, got {tuple(value)}")
    return w, h


def _guarded(ctx: Context, name: str, run: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; a bug in it abstains with the error as the reason, never crashes.

    A GuardFault (a dependency of the check failed) propagates: it is no verdict on the answer.
    """
    try:
        return run()
    except GuardFault:
        raise
    except Exception as exc:  # noqa: BLE001 - a check bug abstains, never crashes
        return result(ctx, name, False, f"check error: {type(exc).__name__}: {exc}")


def prepare(
    output: str,
    expression: str,
    image_size: tuple[float, float],
    *,
    frame: Frame = "auto",
    model_size: tuple[float, float] | None = None,
    multiple: bool = False,
    token_logprobs: Sequence[TokenLogprob] | None = None,
    policy: Policy = DEFAULT_POLICY,
    mode: OutputMode = "box",
) -> Plan:
    """Parse one answer and run the cheap checks; the Plan says what evidence is still needed.

    Arguments are those of verify() (see there), without the verifier. Pure and fast: no I/O.

    Example:
        >>> prepare('[{"bbox_2d": [1, 1, 90, 90], "label": "blue square"}]',
        ...         "the red circle", (400, 400)).needs_evidence   # label_match failed
        False

    Raises ValueError only for invalid arguments (sizes, frame); never for model output.
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    img = _size(image_size, "image_size")
    msize = _size(model_size, "model_size") if model_size is not None else img
    if isinstance(output, str):
        parsed = parse_answer(output, mode)
    else:
        parsed, output = Parsed(ok=False, fmt="error", detail="output is not a string"), ""
    used = resolve_frame(frame, parsed)
    ctx = Context(
        output=output,
        expression=expression or "",
        image_size=img,
        frame=used,
        model_size=msize,
        multiple=multiple,
        token_logprobs=token_logprobs,
        policy=policy,
        parsed=parsed,
        mode=mode,
    )
    ctx.boxes = map_boxes(parsed.boxes, used, img, msize)
    ctx.kept = list(range(len(ctx.boxes)))
    fmt = result(
        ctx, "format", parsed.ok, f"{parsed.fmt}: {parsed.detail}", 1.0 if parsed.ok else 0.0
    )
    checks: list[CheckResult] = [fmt]
    if parsed.ok:
        checks.extend(_guarded(ctx, name, partial(fn, ctx)) for name, fn in CHECKS.items())
    decided = any(not c.passed and c.fatal for c in checks)
    return Plan(ctx, checks, decided)


def _verdict(ctx: Context, checks: list[CheckResult]) -> Verdict:
    """Assemble the Verdict from the context and the check results."""
    reasons = [c.name for c in checks if not c.passed and c.fatal]
    # Indexed like the answer's boxes (and the checks' "box i"); None = no area in the image.
    public = [_public_detection(b, ctx.image_size, ctx.points) for b in ctx.boxes]
    candidates = [d for d in public if d is not None]
    detections: list[Detection] = []
    if not reasons:
        # Verified boxes are returned as the model gave them (mapped and clamped).
        detections = [d for d in (public[i] for i in ctx.kept) if d is not None]
    return Verdict(
        status="abstained" if reasons else "accepted",
        detections=detections,
        candidates=candidates,
        checks=checks,
        reasons=reasons,
        think=ctx.parsed.think.strip() if ctx.parsed.think else None,
        frame=ctx.frame,
    )


def _public_detection(
    box: Box, image_size: tuple[float, float], point: bool = False
) -> Detection | None:
    """The box clamped to the image (or the point) as a public Detection; None when nothing of
    it is in the image.

    Public boxes keep 0 <= x1 < x2 <= width (and so for y): a degenerate or wholly outside
    box ([0, 0, 0, 0] from a confused model) is no box, and the geometry check says why. A
    point outside the image is none either; points are never moved into the image.
    """
    stated = box.raw.stated_confidence
    confidence = box.confidence if box.confidence is not None else stated
    if point:
        x, y = box.bbox[0], box.bbox[1]
        if not (0.0 <= x <= image_size[0] and 0.0 <= y <= image_size[1]):
            return None
        return Detection(point=(x, y), label=box.raw.label, confidence=confidence)
    x1, y1, x2, y2 = bbox = clamp(box.bbox, image_size)
    if not (x1 < x2 and y1 < y2):
        return None
    return Detection(bbox=bbox, label=box.raw.label, confidence=confidence)
