"""The per-call state that checks read and refine, and the check registry type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .nouns import PhraseInfo, analyze
from .parse import Parsed
from .parse_values import RawBox
from .policy import Policy
from .types import BBox, CheckResult, OutputMode, TokenLogprob


@dataclass(slots=True)
class Box:
    """A parsed box mapped to original-image pixels (corners ordered, clamped by geometry)."""

    raw: RawBox
    bbox: BBox
    confidence: float | None = None


@dataclass(slots=True)
class Context:
    """Everything one verification knows; checks read it and may refine boxes/kept."""

    output: str
    expression: str
    image_size: tuple[float, float]
    frame: str
    model_size: tuple[float, float]
    multiple: bool
    token_logprobs: Sequence[TokenLogprob] | None
    policy: Policy
    parsed: Parsed
    mode: OutputMode = "box"
    boxes: list[Box] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    expr: PhraseInfo | None = None
    _think: object | None = None

    def expr_info(self) -> PhraseInfo:
        """The analysed expression (cached per expression string)."""
        if self.expr is None:
            self.expr = analyze(self.expression)
        return self.expr

    @property
    def points(self) -> bool:
        """True when the request asked for points (each Box is then (x, y, x, y))."""
        return self.mode == "point"

    def point_radius(self) -> float:
        """Points closer than this (original pixels) are one object: the policy's share of
        the image diagonal."""
        w, h = self.image_size
        return self.policy.point_radius_frac * (w * w + h * h) ** 0.5

    def kept_boxes(self) -> list[Box]:
        """The boxes that survived geometry and duplicate merging, in answer order."""
        return [self.boxes[i] for i in self.kept]


CheckFn = Callable[[Context], CheckResult]


def result(
    ctx: Context, name: str, passed: bool, detail: str, score: float | None = None
) -> CheckResult:
    """Build a CheckResult whose `fatal` flag comes from the policy."""
    return CheckResult(
        name=name, passed=passed, score=score, detail=detail, fatal=name in ctx.policy.fatal
    )


def not_run(ctx: Context, name: str, why: str) -> CheckResult:
    """A check that did not run: it passes, abstains on nothing and says why it did not run."""
    return CheckResult(
        name=name, passed=True, ran=False, detail=f"not run: {why}", fatal=name in ctx.policy.fatal
    )
