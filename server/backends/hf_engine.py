"""Synchronous Qwen-VL generation with transformers and xgrammar; runs in the worker thread."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import xgrammar as xgr
from PIL import Image
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.logits_process import (
    LogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from ..constraints import Constraint
from .base import BackendError, TokenChoice

log = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"


@dataclass
class SequenceJob:
    """One sequence to continue: a prompt (with at most one image placeholder) and its image."""

    prompt: str
    image: Image.Image | None
    constraint: Constraint | None  # None = unconstrained (the think phase)
    cancelled: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class DecodeParams:
    """Parameters shared by every sequence of one generate() call."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class SequenceResult:
    """The generated text of one sequence, its tokens with logprobs, and why it stopped."""

    text: str
    tokens: list[TokenChoice]
    finish_reason: str
    prompt_tokens: int = 0


class _CancelledRows(StoppingCriteria):
    """Stops rows whose request was cancelled (client gone or deadline passed)."""

    def __init__(self, jobs: Sequence[SequenceJob]) -> None:
        self.jobs = jobs

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kw: object
    ) -> torch.BoolTensor:
        flags = [job.cancelled() for job in self.jobs]
        stop = torch.tensor(flags, dtype=torch.bool, device=input_ids.device)
        return cast(torch.BoolTensor, stop)


class ChosenLogprobs(LogitsProcessor):
    """Keeps the logprob of each step's chosen token only: (batch, steps), not (…, vocab).

    Runs last, on the scores the token is drawn from (after the grammar mask, temperature and
    top-p). The token chosen at one step is known at the next call (the last column of
    `input_ids`), so it holds one step's log-softmax on the device until then.
    """

    def __init__(self) -> None:
        self._previous: torch.Tensor | None = None
        self._chosen: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._take(input_ids[:, -1])
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _take(self, chosen: torch.Tensor) -> None:
        if self._previous is not None:
            self._chosen.append(self._previous.gather(1, chosen[:, None].long())[:, 0])
            self._previous = None

    def finish(self, last_chosen: torch.Tensor) -> torch.Tensor:
        """(batch, steps) logprobs on the host, given the tokens chosen at the last step."""
        self._take(last_chosen)
        if not self._chosen:
            return torch.zeros((last_chosen.shape[0], 0))
        return torch.stack(self._chosen, dim=1).cpu()


def pick_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' → bfloat16 on GPU, float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


SMALL_MODEL_PARAMS = 50_000_000
# vLLM's dummy weights: uniform in [-1e-3, 1e-3]. Tiled from one random block of a prime length:
# drawing 3e9 random numbers takes minutes on a small CPU, copying a block takes seconds.
DUMMY_RANGE = 1e-3
DUMMY_BLOCK = 1_000_003


def fill_dummy_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Overwrite every parameter in place with vLLM-style dummy values (dtype unchanged)."""
    generator = torch.Generator().manual_seed(seed)
    block = torch.empty(DUMMY_BLOCK).uniform_(-DUMMY_RANGE, DUMMY_RANGE, generator=generator)
    with torch.no_grad():
        for index, param in enumerate(model.parameters()):  # a tied weight is listed once
            flat = param.view(-1)
            # A different phase per tensor, so that equal-shaped weights differ.
            src = torch.roll(block, (index * 7919) % DUMMY_BLOCK).to(param.dtype)
            # One copy per tensor: thousands of small copies crawl on a shared CPU.
            reps, rest = divmod(flat.numel(), DUMMY_BLOCK)
            flat[: reps * DUMMY_BLOCK].view(reps, DUMMY_BLOCK).copy_(src.expand(reps, -1))
            flat[reps * DUMMY_BLOCK :].copy_(src[:rest])


def dummy_model(config: PretrainedConfig, dtype: torch.dtype) -> PreTrainedModel:
    """The architecture of `config` with dummy weights, allocated in `dtype` from the start.

    transformers' own initialization is skipped (it draws every weight: minutes for 3 B
    parameters on CPU), and nothing passes through float32: peak memory is the model's size.
    """
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import (  # type: ignore[attr-defined,no-redef]
            no_init_weights,
        )
    with no_init_weights():
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.tie_weights()  # no_init_weights skips init_weights, which ties them
    fill_dummy_weights(model)
    return model


def _set_cpu_threads(model: torch.nn.Module, threads: int | None) -> None:
    """Small models decode faster on one thread: OpenMP sync costs more than it saves."""
    if threads is None:
        n_params = sum(p.numel() for p in model.parameters())
        if n_params >= SMALL_MODEL_PARAMS:
            return
        threads = 1
    torch.set_num_threads(threads)


class HFEngine:
    """Loads a Qwen-VL checkpoint and generates constrained answers for batches of sequences."""

    def __init__(
        self,
        model_dir: str,
        *,
        min_pixels: int,
        max_pixels: int,
        device: str = "auto",
        dtype: str = "auto",
        tokenizer_dir: str | None = None,
        cpu_threads: int | None = None,
        load_format: str = "auto",
    ) -> None:
        from transformers import Qwen2VLImageProcessorPil

        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
        self.config = AutoConfig.from_pretrained(model_dir)
        self.image_processor = Qwen2VLImageProcessorPil.from_pretrained(
            model_dir, size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
        )
        torch_dtype = pick_dtype(dtype, self.device)
        if load_format == "dummy":  # a config-only directory: random weights, as vLLM's
            model = dummy_model(self.config, torch_dtype)
        else:
            model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch_dtype)
        # transformers types PreTrainedModel.to through a decorator mypy cannot follow.
        self.model = model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        if self.device.type == "cpu":
            _set_cpu_threads(self.model, cpu_threads)
        log.info(
            "model on %s (%s)%s",
            self.device,
            str(self.model.dtype).removeprefix("torch."),
            " - no CUDA GPU visible, --device auto chose the CPU"
            if device == "auto" and self.device.type == "cpu"
            else "",
        )
        self.image_token_id = int(self.config.image_token_id)
        self.pad_token_id = self._token_id("<|endoftext|>")
        self.stop_token_ids = [self._token_id("<|im_end|>"), self._token_id("<|endoftext|>")]
        vocab_size = self.config.get_text_config().vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_token_ids
        )
        self.compiler = xgr.GrammarCompiler(info)
        self._accepts_mm_types = (
            "mm_token_type_ids" in inspect.signature(self.model.forward).parameters
        )
        self._lock = threading.Lock()

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id == self.tokenizer.unk_token_id:
            raise BackendError(f"tokenizer has no {token} token")
        return token_id

    def compile(self, constraint: Constraint) -> xgr.CompiledGrammar:
        """Compile the constraint's grammar, the text vLLM gets too (xgrammar caches by text)."""
        return self.compiler.compile_grammar(constraint.ebnf())

    def encode(self, jobs: Sequence[SequenceJob]) -> dict[str, torch.Tensor]:
        """Tokenize prompts with expanded image tokens, left-padded, plus pixel inputs."""
        images = [job.image for job in jobs if job.image is not None]
        pixel_inputs: dict[str, torch.Tensor] = {}
        grids: list[list[int]] = []
        if images:
            pixel_inputs = dict(self.image_processor(images=images, return_tensors="pt"))
            grids = pixel_inputs["image_grid_thw"].tolist()
        merge = self.image_processor.merge_size
        patch = self.image_processor.patch_size
        rows: list[list[int]] = []
        grid_iter = iter(grids)
        for job in jobs:
            prompt = job.prompt
            if job.image is not None:
                t, h, w = next(grid_iter)
                if (w * patch, h * patch) != job.image.size:
                    raise BackendError(
                        f"image processor resized {job.image.size} to {(w * patch, h * patch)}"
                    )
                prompt = prompt.replace(IMAGE_PAD, IMAGE_PAD * (t * h * w // (merge * merge)), 1)
            rows.append(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention[i, width - len(row) :] = 1
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention}
        if self._accepts_mm_types:
            # Without this, image tokens silently get 1-D positions instead of M-RoPE ones.
            inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).to(torch.int)
        if images:
            inputs["pixel_values"] = pixel_inputs["pixel_values"].to(self.model.dtype)
            inputs["image_grid_thw"] = pixel_inputs["image_grid_thw"]
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.inference_mode()
    def generate(self, jobs: Sequence[SequenceJob], params: DecodeParams) -> list[SequenceResult]:
        """Generate one continuation per job; all jobs share `params`."""
        inputs = self.encode(jobs)
        processors: list[LogitsProcessor] = []
        constrained = [job.constraint is not None for job in jobs]
        if any(constrained):
            if not all(constrained):
                raise ValueError("a batch is either all constrained or all free")
            grammars = [self.compile(job.constraint) for job in jobs if job.constraint]
            processors.append(xgr.contrib.hf.LogitsProcessor(grammars))
        if params.do_sample:
            # Ours, not generate()'s, so that the recorder after them sees the final scores.
            if params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
        recorder = ChosenLogprobs()
        processors.append(recorder)
        kwargs: dict[str, object] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "logits_processor": processors,
            "stopping_criteria": StoppingCriteriaList([_CancelledRows(jobs)]),
            "eos_token_id": self.stop_token_ids,
            "pad_token_id": self.pad_token_id,
            "return_dict_in_generate": True,
        }
        if params.do_sample:
            kwargs.update(temperature=1.0, top_p=1.0, top_k=0)
        if params.stop_strings:
            kwargs.update(stop_strings=list(params.stop_strings), tokenizer=self.tokenizer)
        with self._lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(**inputs, **kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:]
        logprobs = recorder.finish(new_tokens[:, -1])
        new_tokens = new_tokens.cpu()
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        results = [
            self._result(new_tokens[i], logprobs[i], params, jobs[i]) for i in range(len(jobs))
        ]
        for result, length in zip(results, prompt_lengths, strict=True):
            result.prompt_tokens = int(length)
        return results

    def _result(
        self, ids: torch.Tensor, logprobs: torch.Tensor, params: DecodeParams, job: SequenceJob
    ) -> SequenceResult:
        """Cut one row at its stop token and pair each token with its logprob."""
        kept: list[int] = []
        finish = "length"
        for token_id in ids.tolist():
            if token_id in self.stop_token_ids:
                finish = "stop"
                break
            kept.append(token_id)
        values = logprobs[: len(kept)].tolist()
        tokens = [
            TokenChoice(token_id, piece, value)
            for token_id, piece, value in zip(kept, self._pieces(kept), values, strict=True)
        ]
        text = "".join(t.text for t in tokens)
        if finish == "length" and any(s in text for s in params.stop_strings):
            finish = "stop"
        if job.cancelled():
            finish = "abort"
        return SequenceResult(text=text, tokens=tokens, finish_reason=finish)

    def _pieces(self, ids: list[int]) -> list[str]:
        """Per-token text that concatenates to the full decode, in linear time.

        Each token is decoded in a window from the token before it (context for tokenizers
        that treat a leading space specially), so the work per token is bounded. A token that
        ends inside a multi-byte character gets "" and the one completing it the whole character.
        """
        pieces: list[str] = []
        start, prefix = 0, ""  # the window's first token, and the text of window[:-1] once final
        for end in range(1, len(ids) + 1):
            window = self._decode(ids[start:end])
            if window.endswith("\ufffd") and end < len(ids):
                pieces.append("")
                continue
            pieces.append(window[len(prefix) :])
            last = self._decode(ids[end - 1 : end])
            start, prefix = (end - 1, last) if "\ufffd" not in last else (end, "")
        return pieces

    def _decode(self, ids: list[int]) -> str:
        """The text of a token sequence, special tokens included."""
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        return text if isinstance(text, str) else "".join(text)

    def prefill_rope_deltas(self, job: SequenceJob) -> torch.Tensor:
        """One forward pass; the model's M-RoPE deltas (non-zero when images get 3-D positions)."""
        inputs = self.encode([job])
        # transformers only overwrites the deltas when it computes M-RoPE: clear stale ones.
        self.model.model.rope_deltas = None
        with torch.inference_mode():
            self.model(**inputs)
        return self.model.model.rope_deltas
