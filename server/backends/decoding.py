"""Decoding rules every backend follows: greedy n, think-then-answer, forced tokens.

Greedy n > 1: a request with `temperature == 0` is greedy whatever its `n`; its n completions
would be identical, so a backend decodes once and returns n copies (`effective_n`,
`replicate`). Only `temperature > 0` samples, and then n completions are drawn independently.

Think-then-answer runs in two phases on both backends: phase 1 writes the think trace
unconstrained (bounded by `think_max_tokens`, stopped at `</think>`); phase 2 gets the prompt,
the think and the forced `</think>\\n<answer>` and writes the JSON under the constraint. Text the
backend writes itself is a forced token (id -1, logprob 0.0), so the tokens of a Completion
always concatenate to its text.

Example:
    >>> think = cut_at(Completion("red</think>", [TokenChoice(1, "red</", -0.5)]), "</think>")
    >>> join_think(think, Completion("[]", [TokenChoice(2, "[]", -0.1)])).text
    '<think>red</think>\\n<answer>[]</answer>'
"""

from __future__ import annotations

from dataclasses import replace

from ..constraints import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from ..models.base import strip_special_tokens
from .base import Completion, GenerationRequest, TokenChoice

FORCED_TOKEN_ID = -1


def forced(text: str) -> TokenChoice:
    """A token the backend wrote itself (not sampled): id -1, logprob 0.0."""
    return TokenChoice(FORCED_TOKEN_ID, text, 0.0)


def is_sampled(request: GenerationRequest) -> bool:
    """True when the request samples (temperature > 0); greedy otherwise, whatever its n."""
    return request.temperature > 0


def effective_n(request: GenerationRequest) -> int:
    """Completions to decode: n when sampling, 1 when greedy (the others are copies)."""
    return max(1, request.n) if is_sampled(request) else 1


def replicate(completions: list[Completion], n: int) -> list[Completion]:
    """Copies of a greedy completion up to `n` (greedy samples are identical)."""
    if not completions or len(completions) >= n:
        return completions
    first = completions[0]
    extra = n - len(completions)
    return completions + [replace(first, tokens=list(first.tokens)) for _ in range(extra)]


def think_prompt(prompt: str) -> str:
    """Phase-1 prompt: the chat prompt with the think tag opened."""
    return prompt + THINK_OPEN


def continuation_prompt(prompt: str, think: str) -> str:
    """Phase-2 prompt: the prompt, the think trace (control tokens stripped) and the forced tags.

    A spelled `<|image_pad|>` in the think would count as a second image, `<|im_end|>` would end
    the turn; the completion's own text keeps the think as the model wrote it.
    """
    return prompt + THINK_OPEN + strip_special_tokens(think) + THINK_CLOSE + "\n" + ANSWER_OPEN


def cut_at(completion: Completion, stop: str) -> Completion:
    """The completion up to (not including) `stop`; a token cut by it keeps its part, forced."""
    text = completion.text.split(stop, 1)[0]
    kept: list[TokenChoice] = []
    used = 0
    for token in completion.tokens:
        if used + len(token.text) > len(text):
            break
        kept.append(token)
        used += len(token.text)
    if used < len(text):
        kept.append(forced(text[used:]))
    return Completion(text=text, tokens=kept, finish_reason=completion.finish_reason)


def join_think(think: Completion, answer: Completion) -> Completion:
    """`<think>…</think>\\n<answer>JSON</answer>` with forced tags between the sampled parts."""
    tokens = [
        forced(THINK_OPEN),
        *think.tokens,
        forced(THINK_CLOSE + "\n" + ANSWER_OPEN),
        *answer.tokens,
        forced(ANSWER_CLOSE),
    ]
    text = THINK_OPEN + think.text + THINK_CLOSE + "\n" + ANSWER_OPEN + answer.text + ANSWER_CLOSE
    return Completion(text=text, tokens=tokens, finish_reason=answer.finish_reason)
