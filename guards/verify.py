"""verify(): the one-call API for offline use: prepare, ask a Verifier, finish."""

from __future__ import annotations

from collections.abc import Sequence

from .plan import DEFAULT_POLICY, Plan, prepare
from .policy import Policy
from .types import Frame, OutputMode, TokenLogprob, Verdict, Verifier
from .visual import Evidence


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
    policy: Policy = DEFAULT_POLICY,
    mode: OutputMode = "box",
) -> Verdict:
    """Decide whether to return a grounding answer or abstain, and say why.

    `output` is the raw model text in any format of shared/QWEN-FACTS.md; boxes in the verdict
    are in original-image pixels. With ``frame="pixels"`` coordinates are absolute in the model
    frame `model_size` (Qwen2.5-VL; None = the original image); "relative1000" is 0..1000
    (Qwen2-VL, Qwen3-VL); "normalized" is 0..1; "auto" takes all-float values in [0, 1] as
    normalized, Qwen2-VL box tokens and Visual-RFT lists as relative1000, else pixels.

    With ``mode="point"`` the answer is points (``point_2d``, ``<points x1 y1>``, ...; a box
    written instead counts as its centre) and each detection carries `point`, not `bbox`.

    With a `verifier`, the visual re-check and self-consistency ask it for evidence (see
    ``prepare``/``Plan.finish`` to gather it yourself, e.g. batched or asynchronously).

    Example:
        >>> v = verify('[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]',
        ...            "the red circle left of the blue square", (100, 100))
        >>> v.status, v.detections[0].bbox
        ('accepted', (10.0, 20.0, 50.0, 60.0))
        >>> verify('[{"point_2d": [30, 40], "label": "red circle"}]', "the red circle",
        ...        (100, 100), mode="point").detections[0].point
        (30.0, 40.0)
        >>> verify('[{"bbox_2d": [10, 20, 50, 60], "label": "blue square"}]',
        ...        "the red circle left of the blue square", (100, 100)).reasons
        ['label_match']

    Raises ValueError only for invalid arguments (sizes, frame); never for model output. An
    exception of the verifier (the model is unreachable) propagates: it is not a verdict.
    """
    plan = prepare(
        output,
        expression,
        image_size,
        frame=frame,
        model_size=model_size,
        multiple=multiple,
        token_logprobs=token_logprobs,
        policy=policy,
        mode=mode,
    )
    if verifier is None or not plan.needs_evidence:
        return plan.finish(None)
    return plan.finish(ask(verifier, plan))


def ask(verifier: Verifier, plan: Plan) -> Evidence:
    """The evidence a plan needs, from a synchronous Verifier (one call per crop)."""
    probs = tuple(float(verifier.yes_probability(c.bbox, c.question)) for c in plan.crops)
    samples = tuple(verifier.sample_outputs(plan.samples)) if plan.samples > 0 else ()
    return Evidence(yes_probabilities=probs, samples=samples)
