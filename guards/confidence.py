"""The `confidence` check: per-detection confidence from the token logprobs of the answer.

A detection's confidence is the geometric mean of the probabilities of the tokens that carry
its decision: the coordinate digits, the label characters, and the branch token where the answer
list opens (object vs. no object), i.e. ``exp(mean(logprob))``. The geometric mean is length-
normalised, so long labels or four-digit coordinates are not penalised for their length, yet one
near-random digit still drags it down. A "no object" answer gets the branch probability.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate

from .context import Context, not_run, result
from .parse_values import Span
from .types import CheckResult, TokenLogprob


class TokenIndex:
    """Character offsets of tokens, to find the tokens that overlap a character span."""

    __slots__ = ("ends", "tokens", "offset")

    def __init__(
        self, tokens: Sequence[TokenLogprob], offset: int = 0, texts: Sequence[str] | None = None
    ) -> None:
        """Index tokens whose concatenation starts at `offset` in the output."""
        texts = texts if texts is not None else [t.token for t in tokens]
        self.ends = list(accumulate(map(len, texts), initial=offset))[1:]
        self.tokens = tokens
        self.offset = offset

    def overlapping(self, span: Span) -> range:
        """Indices of the tokens that overlap characters [start, end)."""
        a, b = span
        if b <= a:
            return range(0)
        first = bisect_right(self.ends, a)  # first token ending after a
        # Token i starts at ends[i - 1]; the last overlapping one starts before b.
        last = min(bisect_left(self.ends, b) + 1, len(self.ends))
        return range(first, last)

    def logprob(self, i: int) -> float:
        """Logprob of token i, clamped to <= 0 (engines may round forced tokens above 0)."""
        return min(float(self.tokens[i].logprob), 0.0)


def align(
    output: str, tokens: Sequence[TokenLogprob], texts: Sequence[str] | None = None
) -> int | None:
    """Offset of the tokens' text in the output (0 when equal), or None if they disagree.

    The tokens may cover only the generated suffix when the prompt pre-filled e.g. ``<think>``.
    """
    text = "".join(texts if texts is not None else [t.token for t in tokens])
    if text == output:
        return 0
    if text and output.endswith(text):
        return len(output) - len(text)
    return None


def geometric_mean_prob(index: TokenIndex, token_ids: set[int]) -> float | None:
    """exp(mean logprob) of a set of tokens, or None when empty."""
    if not token_ids:
        return None
    total = math.fsum(index.logprob(i) for i in token_ids)
    return math.exp(total / len(token_ids))


def check_confidence(ctx: Context) -> CheckResult:
    """Attribute token logprobs to each detection; abstain below policy.min_confidence."""
    if not ctx.token_logprobs:
        return not_run(ctx, "confidence", "no token logprobs")
    texts = [t.token for t in ctx.token_logprobs]
    offset = align(ctx.output, ctx.token_logprobs, texts)
    if offset is None:
        return not_run(ctx, "confidence", "the tokens do not concatenate to the output")
    index = TokenIndex(ctx.token_logprobs, offset, texts)
    parsed = ctx.parsed
    branch: set[int] = set(index.overlapping(parsed.branch_span)) if parsed.branch_span else set()
    minimum = ctx.policy.min_confidence
    confs: list[float] = []
    kept = ctx.kept_boxes()
    for box in kept:
        ids = set(branch)
        for span in box.raw.coord_spans:
            ids.update(index.overlapping(span))
        if box.raw.label_span:
            ids.update(index.overlapping(box.raw.label_span))
        conf = geometric_mean_prob(index, ids)
        if conf is not None:
            box.confidence = conf
            confs.append(conf)
    what = "detection"
    if not kept and parsed.no_object:
        conf = geometric_mean_prob(index, branch)
        if conf is not None:
            confs.append(conf)
        what = "no-object answer"
    if not confs:
        return not_run(ctx, "confidence", "no scored tokens")
    low = min(confs)
    if low < minimum:
        return result(
            ctx,
            "confidence",
            False,
            f"{what} confidence {low:.3f} < min_confidence {minimum:g}",
            low,
        )
    return result(
        ctx, "confidence", True, f"{what} confidence {low:.3f} >= min_confidence {minimum:g}", low
    )
