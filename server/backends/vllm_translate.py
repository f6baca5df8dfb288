"""Pure translation between boxguard and vLLM 0.20.x: engine args, sampling params, outputs.

Nothing here imports vLLM: every function returns plain dicts or boxguard dataclasses, so the
translation is testable on a CPU-only install. `vllm_backend` turns the dicts into vLLM objects.

The think variant runs in two engine calls, as `decoding` describes for every backend; greedy
requests ask the engine for one sample whatever their n (`decoding.effective_n`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..constraints import THINK_CLOSE, Constraint
from .base import Completion, GenerationRequest, TokenChoice
from .decoding import effective_n, forced

if TYPE_CHECKING:
    from PIL import Image

    from ..models import ModelAdapter
    from ..settings import Settings

FINAL_ONLY = "FINAL_ONLY"
# Logprobs after the grammar bitmask, penalties, temperature and top-p: the distribution the
# token was really drawn from. (vLLM 0.20 applies the bitmask before the sampler, so even
# raw_logprobs are renormalized over the tokens the grammar allows; processed ones also honour
# temperature and top-p.)
LOGPROBS_MODE = "processed_logprobs"


class _LogprobLike(Protocol):
    logprob: float
    decoded_token: str | None


class CompletionOutputLike(Protocol):
    """The fields of vllm.outputs.CompletionOutput this module reads."""

    text: str
    token_ids: Sequence[int]
    logprobs: Any
    finish_reason: str | None


def engine_args_dict(settings: Settings, model_dir: str, adapter: ModelAdapter) -> dict[str, Any]:
    """AsyncEngineArgs keyword arguments for the settings, checkpoint and adapter."""
    args: dict[str, Any] = {
        "model": model_dir,
        "tokenizer": settings.tokenizer,
        "served_model_name": settings.model_name,
        "dtype": settings.dtype,
        "seed": settings.seed,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "data_parallel_size": settings.data_parallel_size,
        "load_format": settings.load_format,
        "enforce_eager": settings.enforce_eager,
        # Without "video": 0 the profiler reserves activation memory for a video.
        "limit_mm_per_prompt": {"image": 1, "video": 0},
        "mm_processor_kwargs": {
            "min_pixels": adapter.min_pixels,
            "max_pixels": adapter.max_pixels,
        },
        "logprobs_mode": LOGPROBS_MODE,
        # The same compiler as the transformers backend; requests carry boxguard's own grammar.
        "structured_outputs_config": {"backend": "xgrammar"},
        # Stat loggers on: vLLM's PrometheusStatLogger registers vllm:* metrics in-process.
        "disable_log_stats": False,
        "enable_log_requests": False,
        "trust_remote_code": False,
        "max_model_len": settings.max_model_len,
        "max_num_seqs": settings.max_num_seqs,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "mm_processor_cache_gb": settings.mm_processor_cache_gb,
        "enable_prefix_caching": settings.enable_prefix_caching,
    }
    # An unset (None) value is left to vLLM's default.
    return {k: v for k, v in args.items() if v is not None}


def structured_outputs_kwargs(constraint: Constraint) -> dict[str, Any]:
    """StructuredOutputsParams kwargs: the EBNF grammar the transformers backend compiles too."""
    return {"grammar": constraint.ebnf()}


def _common_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Sampling fields shared by every engine call of one request."""
    return {
        "temperature": max(0.0, request.temperature),
        "top_p": request.top_p,
        "seed": request.seed,
        "logprobs": 0 if request.logprobs else None,
        "output_kind": FINAL_ONLY,
        "skip_special_tokens": True,
    }


def answer_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """SamplingParams kwargs of the constrained answer (the only call without think)."""
    return {
        **_common_kwargs(request),
        "n": effective_n(request),
        "max_tokens": request.constraint.max_tokens,
        "structured_outputs": structured_outputs_kwargs(request.constraint),
        # No stop string needs the text, so the backend decodes the finished answer once:
        # vLLM's per-step detokenizer and per-logprob decode cost ~0.7 ms of CPU a request.
        "detokenize": False,
    }


def think_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """SamplingParams kwargs of phase 1: the free think trace, stopped at `</think>`."""
    return {
        **_common_kwargs(request),
        "n": effective_n(request),
        "max_tokens": request.constraint.think_max_tokens,
        "stop": [THINK_CLOSE],
        "include_stop_str_in_output": False,
        "structured_outputs": None,
    }


def continuation_kwargs(request: GenerationRequest, index: int) -> dict[str, Any]:
    """SamplingParams kwargs of phase 2 for the `index`-th think trace (one sample each)."""
    kwargs = {**answer_kwargs(request), "n": 1}
    if request.seed is not None:
        kwargs["seed"] = request.seed + index  # what vLLM does for the children of n > 1
    return kwargs


def prompt_input(prompt: str, image: Image.Image | None) -> dict[str, Any]:
    """vLLM's TextPrompt dict; the image rides along as multi_modal_data."""
    if image is None:
        return {"prompt": prompt}
    return {"prompt": prompt, "multi_modal_data": {"image": image}}


def align_pieces(text: str, pieces: Sequence[str]) -> list[str]:
    """Cut per-token strings so they concatenate to `text` exactly.

    Tokens that are absent from the text (a skipped special token such as `<|im_end|>`, the
    tail of a stop string) get "", a token cut by a stop string keeps its part, and text no
    token accounts for (detokenizer corner cases) is appended to the last token.

    Example:
        >>> align_pieces("ab", ["a", "b", "<|im_end|>"])
        ['a', 'b', '']
    """
    out: list[str] = []
    pos = 0
    for piece in pieces:
        rest = text[pos:]
        if rest.startswith(piece):
            take = piece
        else:
            k = 0
            limit = min(len(piece), len(rest))
            while k < limit and piece[k] == rest[k]:
                k += 1
            take = rest[:k]
        out.append(take)
        pos += len(take)
    if pos < len(text) and out:
        out[-1] += text[pos:]
    return out


def _position_logprob(position: Any, token_id: int) -> tuple[float, str | None]:
    """(logprob, decoded text) of the sampled token at one position of vLLM's logprobs."""
    if not position:
        return 0.0, None
    entry: _LogprobLike | None = position.get(token_id)
    if entry is None:  # the sampled token is always first
        entry = next(iter(position.values()))
    return float(entry.logprob), entry.decoded_token


def completion_from_output(
    output: CompletionOutputLike,
    *,
    decode: Callable[[int], str] | None = None,
    decode_text: Callable[[list[int]], str] | None = None,
    drop_untexted_tail: bool = True,
) -> Completion:
    """A boxguard Completion from a vLLM CompletionOutput (duck-typed).

    `decode(token_id) -> str` is used for tokens whose logprobs carry no decoded text, and
    `decode_text(token_ids) -> str` for the text of an output vLLM did not detokenize. With
    `drop_untexted_tail`, tokens after the end of the text (the EOS token, a stop string's
    tokens) are dropped, as the transformers backend does.
    """
    token_ids = list(output.token_ids)
    logprobs = output.logprobs
    values: list[float] = []
    pieces: list[str] = []
    for i, token_id in enumerate(token_ids):
        position = logprobs[i] if logprobs is not None and i < len(logprobs) else None
        lp, piece = _position_logprob(position, token_id)
        if piece is None:
            piece = decode(token_id) if decode is not None else ""
        values.append(lp)
        pieces.append(piece)
    text = decode_text(token_ids) if decode_text is not None else output.text
    texts = align_pieces(text, pieces)
    tokens = [TokenChoice(t, s, lp) for t, s, lp in zip(token_ids, texts, values, strict=True)]
    if drop_untexted_tail:
        while tokens and tokens[-1].text == "":
            tokens.pop()
    if not tokens and text:
        tokens = [forced(text)]
    return Completion(text=text, tokens=tokens, finish_reason=output.finish_reason or "stop")
