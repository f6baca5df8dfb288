"""TransformersBackend: Qwen-VL with transformers + xgrammar, CPU or GPU, batched in one worker."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from ..constraints import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from ..models.base import strip_special_tokens
from .base import BackendDead, BackendError, Completion, Generation, GenerationRequest, TokenChoice
from .batching import BatchQueue, Pending

try:
    from .hf_engine import DecodeParams, HFEngine, SequenceJob, SequenceResult
except ImportError as exc:  # pragma: no cover - exercised only on a light install
    raise ImportError(
        f'the transformers backend needs the server extra: pip install "boxguard[server]" ({exc})'
    ) from exc

if TYPE_CHECKING:
    from ..models import ModelAdapter
    from ..settings import Settings

log = logging.getLogger(__name__)


def _forced(text: str) -> TokenChoice:
    """Text the server appended itself: certain, so logprob 0."""
    return TokenChoice(token_id=-1, text=text, logprob=0.0)


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
        self._ready = False

    @property
    def ready(self) -> bool:
        """True once the model is loaded and the worker runs."""
        return self._ready

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the worker."""
        return self._queue.depth

    async def start(self) -> None:
        """Load the checkpoint in the worker thread, then start the batching worker."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="boxguard-gen")
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self._executor, self._load)
        self._queue.start()
        self._ready = True

    def _load(self) -> HFEngine:
        return HFEngine(
            self.model_dir,
            min_pixels=self.adapter.min_pixels,
            max_pixels=self.adapter.max_pixels,
            device=self.settings.device,
            dtype=self.settings.dtype,
            tokenizer_dir=self.settings.tokenizer,
            cpu_threads=self.settings.cpu_threads,
        )

    async def stop(self) -> None:
        """Stop taking work, fail the queue, release the thread and the model."""
        self._ready = False
        await self._queue.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self.engine = None

    async def generate(self, request: GenerationRequest) -> Generation:
        """Queue the request (QueueFull when full) and wait for its completions."""
        if not self._ready:
            raise BackendDead("backend is not running")
        c = request.constraint
        # Everything the worker passes to generate() as one set of parameters must match.
        sampled = request.n > 1 or request.temperature > 0
        key = (
            c.think,
            c.max_tokens,
            c.think_max_tokens,
            sampled,
            request.temperature,
            request.top_p,
            request.seed,
        )
        result: Generation = await self._queue.submit(request, key)
        return result

    async def _run_batch(self, batch: list[Pending[GenerationRequest]]) -> list[object]:
        """Run a batch of same-key requests in the worker thread."""
        if self._executor is None:
            raise BackendDead("backend is stopped")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._generate_batch, batch)

    def _generate_batch(self, batch: list[Pending[GenerationRequest]]) -> list[object]:
        """Expand each request into n sequences, run the phases, regroup per request."""
        engine = self.engine
        if engine is None:
            raise BackendDead("model is not loaded")
        first = batch[0].item
        jobs: list[SequenceJob] = []
        owners: list[int] = []
        for index, pending in enumerate(batch):
            req = pending.item
            for _ in range(req.n):
                jobs.append(
                    SequenceJob(
                        req.prompt, req.image, req.constraint, lambda p=pending: p.cancelled
                    )
                )
                owners.append(index)
        sampled = first.n > 1 or first.temperature > 0
        try:
            if first.constraint.think:
                results = self._think_then_answer(engine, jobs, first, sampled)
            else:
                params = self._params(first, first.constraint.max_tokens, sampled)
                results = [(res, []) for res in engine.generate(jobs, params)]
        except BackendError:
            raise
        except Exception as exc:
            log.exception("generation failed (request_ids=%s)", [p.item.request_id for p in batch])
            raise BackendError("generation failed") from exc
        grouped: list[list[Completion]] = [[] for _ in batch]
        prompt_tokens = [0] * len(batch)
        for owner, (answer, prefix) in zip(owners, results, strict=True):
            prompt_tokens[owner] = max(prompt_tokens[owner], answer.prompt_tokens)
            tokens = prefix + answer.tokens
            grouped[owner].append(
                Completion(
                    text="".join(t.text for t in tokens),
                    tokens=tokens,
                    finish_reason=answer.finish_reason,
                )
            )
        return [
            Generation(completions=c, prompt_tokens=p)
            for c, p in zip(grouped, prompt_tokens, strict=True)
        ]

    def _params(self, req: GenerationRequest, max_tokens: int, sampled: bool) -> DecodeParams:
        return DecodeParams(
            max_new_tokens=max_tokens,
            do_sample=sampled,
            temperature=max(req.temperature, 1e-3) if sampled else 1.0,
            top_p=req.top_p,
            seed=req.seed,
        )

    def _think_then_answer(
        self, engine: HFEngine, jobs: list[SequenceJob], first: GenerationRequest, sampled: bool
    ) -> list[tuple[SequenceResult, list[TokenChoice]]]:
        """Free think text under its own budget, then the forced tags and the JSON answer."""
        think_jobs = [SequenceJob(j.prompt + THINK_OPEN, j.image, None, j.cancelled) for j in jobs]
        think_params = self._params(first, first.constraint.think_max_tokens, sampled)
        think_params = replace(think_params, stop_strings=(THINK_CLOSE,))
        thinks = engine.generate(think_jobs, think_params)
        answer_jobs: list[SequenceJob] = []
        prefixes: list[list[TokenChoice]] = []
        for job, think in zip(jobs, thinks, strict=True):
            body = think.text.split(THINK_CLOSE, 1)[0]
            kept = _tokens_covering(think.tokens, len(body))
            bridge = body[sum(len(t.text) for t in kept) :]
            prefix = [_forced(THINK_OPEN), *kept]
            if bridge:
                prefix.append(_forced(bridge))
            prefix.append(_forced(f"{THINK_CLOSE}\n{ANSWER_OPEN}"))
            think_text = "".join(t.text for t in prefix)
            answer_jobs.append(
                SequenceJob(
                    job.prompt + strip_special_tokens(think_text),
                    job.image,
                    job.constraint,
                    job.cancelled,
                )
            )
            prefixes.append(prefix)
        answers = engine.generate(
            answer_jobs, self._params(first, first.constraint.max_tokens, sampled)
        )
        for answer in answers:
            answer.tokens.append(_forced(ANSWER_CLOSE))
        return list(zip(answers, prefixes, strict=True))


def _tokens_covering(tokens: list[TokenChoice], n_chars: int) -> list[TokenChoice]:
    """The leading tokens whose text lies entirely within the first n_chars characters."""
    kept: list[TokenChoice] = []
    used = 0
    for token in tokens:
        if used + len(token.text) > n_chars:
            break
        kept.append(token)
        used += len(token.text)
    return kept
