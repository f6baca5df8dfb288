"""TransformersBackend: Qwen-VL with transformers + xgrammar, CPU or GPU, batched in one worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from ..constraints import THINK_CLOSE
from .base import (
    NOT_STARTED,
    BackendDead,
    BackendError,
    BackendHealth,
    Completion,
    Generation,
    GenerationRequest,
)
from .batching import BatchQueue, Pending
from .decoding import (
    continuation_prompt,
    cut_at,
    effective_n,
    is_sampled,
    join_think,
    replicate,
    think_prompt,
)

try:
    import torch

    from .hf_engine import DecodeParams, HFEngine, SequenceJob, SequenceResult
except ImportError as exc:  # pragma: no cover - exercised only on a light install
    raise ImportError(
        f'the transformers backend needs the server extra: pip install "boxguard[server]" ({exc})'
    ) from exc

if TYPE_CHECKING:
    from ..models import ModelAdapter
    from ..settings import Settings

log = logging.getLogger(__name__)


def is_fatal(exc: BaseException) -> bool:
    """Whether an engine error leaves the engine unusable until it is reloaded.

    A CUDA error (illegal access, device-side assert) poisons the context for every later call,
    and host memory exhaustion leaves the worker's state unknown; anything else is one batch's
    failure and the engine keeps serving.
    """
    return isinstance(exc, (torch.AcceleratorError, MemoryError)) or "CUDA error" in str(exc)


def _cancel_flag(pending: Pending[GenerationRequest]) -> Callable[[], bool]:
    """Whether the request's caller stopped waiting, read by the engine between steps."""
    return lambda: pending.cancelled


def _as_completion(result: SequenceResult) -> Completion:
    return Completion(text=result.text, tokens=result.tokens, finish_reason=result.finish_reason)


class TransformersBackend:
    """Runs generation in one worker thread; concurrent requests queue (bounded) and batch."""

    name = "transformers"

    def __init__(self, settings: Settings, model_dir: str, adapter: ModelAdapter) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.adapter = adapter
        self.engine: HFEngine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._queue: BatchQueue[GenerationRequest] = BatchQueue(
            self._run_batch, maxsize=settings.queue_size, max_batch=settings.max_batch_size
        )
        self._health = BackendHealth("stopped")

    @property
    def health(self) -> BackendHealth:
        """starting while the model loads, ready, dead after a fatal engine error, stopped."""
        return self._health

    @property
    def ready(self) -> bool:
        """True once the model is loaded and the worker runs."""
        return self._health.ready

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the worker."""
        return self._queue.depth

    async def start(self) -> None:
        """Load the checkpoint in the worker thread, then start the batching worker."""
        self._health = BackendHealth("starting")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="boxguard-gen")
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self._executor, self._load)
        self._queue.start()
        self._health = BackendHealth("ready")

    def _load(self) -> HFEngine:
        return HFEngine(
            self.model_dir,
            min_pixels=self.adapter.min_pixels,
            max_pixels=self.adapter.max_pixels,
            device=self.settings.device,
            dtype=self.settings.dtype,
            tokenizer_dir=self.settings.tokenizer,
            cpu_threads=self.settings.cpu_threads,
            load_format=self.settings.load_format,
        )

    async def stop(self) -> None:
        """Stop taking work, answer in-flight requests 503, release the thread and the model."""
        self._health = BackendHealth("stopped")
        await self._queue.stop()
        if self._executor is not None:
            # The running batch sees its rows cancelled and ends within a decode step.
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
            self._executor = None
        self.engine = None

    async def generate(self, request: GenerationRequest) -> Generation:
        """Queue the request (QueueFull when full) and wait for its completions."""
        if self._health.state == "dead":
            raise BackendDead(f"{self._health.reason}; the server is restarting it")
        if not self.ready:
            raise BackendDead(NOT_STARTED)
        c = request.constraint
        # Everything the worker passes to generate() as one set of parameters must match.
        key = (
            c.think,
            c.max_tokens,
            c.think_max_tokens,
            is_sampled(request),
            request.temperature,
            request.top_p,
            request.seed,
        )
        result: Generation = await self._queue.submit(request, key)
        return result

    async def _run_batch(self, batch: list[Pending[GenerationRequest]]) -> list[object]:
        """Run a batch of same-key requests in the worker thread."""
        if self._executor is None:
            raise BackendDead(NOT_STARTED)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._generate_batch, batch)

    def _generate_batch(self, batch: list[Pending[GenerationRequest]]) -> list[object]:
        """Expand each request into its sequences, run the phases, regroup per request."""
        engine = self.engine
        if engine is None:
            raise BackendDead(NOT_STARTED)
        first = batch[0].item
        jobs: list[SequenceJob] = []
        owners: list[int] = []
        for index, pending in enumerate(batch):
            req = pending.item
            for _ in range(effective_n(req)):
                jobs.append(
                    SequenceJob(req.prompt, req.image, req.constraint, _cancel_flag(pending))
                )
                owners.append(index)
        try:
            if first.constraint.think:
                results = self._think_then_answer(engine, jobs, first)
            else:
                params = self._params(first, first.constraint.max_tokens)
                results = [
                    (_as_completion(r), r.prompt_tokens) for r in engine.generate(jobs, params)
                ]
        except BackendError:
            raise
        except Exception as exc:
            log.exception("generation failed (request_ids=%s)", [p.item.request_id for p in batch])
            if is_fatal(exc):
                # The supervisor sees `dead` and reloads the engine.
                self._health = BackendHealth("dead", f"the engine failed: {exc}")
                raise BackendDead("the engine failed fatally; it is being restarted") from exc
            raise BackendError("generation failed") from exc
        grouped: list[list[Completion]] = [[] for _ in batch]
        prompt_tokens = [0] * len(batch)
        for owner, (completion, prompt_len) in zip(owners, results, strict=True):
            prompt_tokens[owner] = max(prompt_tokens[owner], prompt_len)
            grouped[owner].append(completion)
        return [
            Generation(completions=replicate(c, max(1, p.item.n)), prompt_tokens=t)
            for c, t, p in zip(grouped, prompt_tokens, batch, strict=True)
        ]

    def _params(self, req: GenerationRequest, max_tokens: int) -> DecodeParams:
        return DecodeParams(
            max_new_tokens=max_tokens,
            do_sample=is_sampled(req),
            temperature=req.temperature if is_sampled(req) else 1.0,
            top_p=req.top_p,
            seed=req.seed,
        )

    def _think_then_answer(
        self, engine: HFEngine, jobs: list[SequenceJob], first: GenerationRequest
    ) -> list[tuple[Completion, int]]:
        """Free think text under its own budget, then the forced tags and the JSON answer."""
        think_jobs = [SequenceJob(think_prompt(j.prompt), j.image, None, j.cancelled) for j in jobs]
        think_params = self._params(first, first.constraint.think_max_tokens)
        think_params = replace(think_params, stop_strings=(THINK_CLOSE,))
        thinks = [
            cut_at(_as_completion(r), THINK_CLOSE)
            for r in engine.generate(think_jobs, think_params)
        ]
        answer_jobs = [
            SequenceJob(continuation_prompt(j.prompt, t.text), j.image, j.constraint, j.cancelled)
            for j, t in zip(jobs, thinks, strict=True)
        ]
        answers = engine.generate(answer_jobs, self._params(first, first.constraint.max_tokens))
        return [
            (join_think(t, _as_completion(a)), a.prompt_tokens)
            for t, a in zip(thinks, answers, strict=True)
        ]
