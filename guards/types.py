"""Public data types of the verification layer: results, verdicts and the Verifier protocol.

All result types are pydantic models so that the server's wire schema can reuse them as they are.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

BBox = tuple[float, float, float, float]
Point = tuple[float, float]
OutputMode = Literal["box", "point"]
Frame = Literal["pixels", "relative1000", "normalized", "auto"]
ResolvedFrame = Literal["pixels", "relative1000", "normalized"]
Status = Literal["accepted", "abstained"]

# The binding check names, in the order verify() runs them.
CheckName = Literal[
    "format",
    "geometry",
    "cardinality",
    "label_match",
    "think_consistency",
    "confidence",
    "visual_check",
    "self_consistency",
]
CHECK_NAMES: tuple[str, ...] = get_args(CheckName)


class TokenLogprob(BaseModel):
    """One generated token and the log-probability the model gave it when it was sampled."""

    model_config = ConfigDict(frozen=True)

    token: str = Field(description="The decoded token text; all tokens concatenate to the output.")
    # Not bounded above: engines can report 0.0 or a rounding-positive value for forced tokens;
    # the confidence check clamps it to 0.
    logprob: float = Field(description="Natural-log probability of the sampled token.")


class Detection(BaseModel):
    """One box (x1, y1, x2, y2) or one point (x, y) in original-image pixels, with its label.

    A box request's detections carry `bbox`, a point request's (``output="point"``) `point`.

    Example:
        >>> Detection(point=(120.0, 48.5), label="search button").bbox is None
        True
    """

    bbox: BBox | None = Field(
        default=None,
        description="x1, y1, x2, y2 in original-image pixels, x1 < x2, y1 < y2; none for a point.",
    )
    point: Point | None = Field(
        default=None,
        description="x, y in original-image pixels, inside the image; only for output 'point'.",
    )
    label: str | None = Field(default=None, description="The label the model gave, if any.")
    confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Confidence in [0, 1] from token logprobs (else the model's stated one).",
    )

    @model_validator(mode="after")
    def _box_or_point(self) -> Detection:
        """Exactly one of bbox and point."""
        if (self.bbox is None) == (self.point is None):
            raise ValueError("a detection has either a bbox or a point")
        return self


class CheckResult(BaseModel):
    """The outcome of one check: passed or not, an optional score, a human-readable reason."""

    name: str = Field(description="Check name, e.g. 'label_match'.")
    passed: bool = Field(description="True when the check passed or did not run.")
    ran: bool = Field(
        default=True,
        description="False when the check did not run (disabled by policy, or nothing to check: "
        "no logprobs, no boxes, no label); its `passed` then verifies nothing.",
    )
    score: float | None = Field(default=None, description="Check-specific score, if any.")
    detail: str = Field(default="", description="Why it passed or failed, for humans.")
    fatal: bool = Field(default=True, description="Whether a failure of this check abstains.")


class Verdict(BaseModel):
    """The decision for one model answer: accepted detections or an abstention with reasons."""

    status: Status
    detections: list[Detection] = Field(
        default_factory=list,
        description="Verified boxes when accepted; empty when accepted means 'no such object'.",
    )
    candidates: list[Detection] = Field(
        default_factory=list,
        description="Every parsed box (mapped, clamped), also when abstained, except those "
        "with no area inside the image (the geometry check names them).",
    )
    checks: list[CheckResult] = Field(default_factory=list)
    reasons: list[str] = Field(
        default_factory=list, description="Names of the failed fatal checks (empty if accepted)."
    )
    think: str | None = Field(default=None, description="The model's think trace, if any.")
    frame: str | None = Field(
        default=None, description="The coordinate frame used: pixels, relative1000 or normalized."
    )

    @property
    def accepted(self) -> bool:
        """True when the answer is returned to the caller."""
        return self.status == "accepted"


@runtime_checkable
class Verifier(Protocol):
    """Synchronous callbacks into a model for verify()'s visual re-check and self-consistency.

    For offline use; an exception it raises propagates out of verify(). The server does not
    use it: it gathers a Plan's evidence itself, batched, on its event loop.
    """

    def yes_probability(self, bbox: BBox, question: str) -> float:
        """P("yes") for `question` about the crop of the original image at `bbox`.

        `bbox` is in original pixels, already widened by the policy's margin and clipped to the
        image, so the verifier crops exactly that region. `question` is a bare question ("Is
        this a red circle?"); the verifier adds its own answer-format instruction.
        """
        ...

    def sample_outputs(self, k: int) -> list[str]:
        """Return k sampled raw outputs of the same request (same prompt, temperature > 0)."""
        ...
