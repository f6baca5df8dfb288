"""The vLLM backend: an in-process `AsyncLLM` (vLLM 0.20.x V1 engine) with structured outputs.

vLLM is imported only when a `VLLMBackend` is built; without it the constructor raises an
ImportError that says how to install it. The request translation lives in `vllm_translate`
(pure, testable without vLLM); this module builds the vLLM objects and drives the engine.

Metrics: with `disable_log_stats=False`, AsyncLLM's StatLoggerManager creates vLLM's
PrometheusStatLogger in this process; it registers its `vllm:*` metrics in prometheus_client's
default REGISTRY (vLLM switches to a multiprocess registry only when PROMETHEUS_MULTIPROC_DIR
is set, which `vllm serve` does for several API servers, not AsyncLLM), so the server's
/metrics shows them next to the `boxguard_*` ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .base import (
    NOT_STARTED,
    BackendDead,
    BackendError,
    BackendHealth,
    Completion,
    Generation,
    GenerationRequest,
    QueueFull,
)
from .decoding import continuation_prompt, join_think, replicate, think_prompt
from .vllm_translate import (
    FINAL_ONLY,
    answer_kwargs,
    completion_from_output,
    continuation_kwargs,
    engine_args_dict,
    prompt_input,
    think_kwargs,
)

if TYPE_CHECKING:
    from ..models import ModelAdapter
    from ..settings import Settings

log = logging.getLogger("boxguard.vllm")

VLLM_INSTALL_HINT = 'the vllm backend needs vLLM: pip install "boxguard[vllm]"'
STATS_INTERVAL_S = 10.0


def _import_vllm() -> SimpleNamespace:
    """Import the vLLM names this backend uses, or fail with the install hint."""
    try:
        import vllm
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import (
            RequestOutputKind,
            SamplingParams,
            StructuredOutputsParams,
        )
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError
    except ImportError as exc:
        raise ImportError(VLLM_INSTALL_HINT) from exc
    return SimpleNamespace(
        version=getattr(vllm, "__version__", "unknown"),
        AsyncEngineArgs=AsyncEngineArgs,
        AsyncLLM=AsyncLLM,
        EngineDeadError=EngineDeadError,
        EngineGenerateError=EngineGenerateError,
        RequestOutputKind=RequestOutputKind,
        SamplingParams=SamplingParams,
        StructuredOutputsConfig=StructuredOutputsConfig,
        StructuredOutputsParams=StructuredOutputsParams,
        UsageContext=UsageContext,
    )


def build_engine_args(args: dict[str, Any], vllm: SimpleNamespace | None = None) -> Any:
    """vLLM's AsyncEngineArgs from `engine_args_dict` output."""
    vllm = vllm or _import_vllm()
    kwargs = dict(args)
    so = kwargs.pop("structured_outputs_config", None)
    if so is not None:  # EngineArgs does not turn this dict into its config class itself
        kwargs["structured_outputs_config"] = vllm.StructuredOutputsConfig(**so)
    return vllm.AsyncEngineArgs(**kwargs)


def build_sampling_params(kwargs: dict[str, Any], vllm: SimpleNamespace | None = None) -> Any:
    """vLLM's SamplingParams from one of the `*_kwargs` dicts of vllm_translate."""
    vllm = vllm or _import_vllm()
    kw = dict(kwargs)
    so = kw.pop("structured_outputs", None)
    if kw.get("output_kind") == FINAL_ONLY:
        kw["output_kind"] = vllm.RequestOutputKind.FINAL_ONLY
    params = vllm.SamplingParams(**kw)
    if so is not None:
        params.structured_outputs = vllm.StructuredOutputsParams(**so)
    if hasattr(params, "skip_clone"):
        # Built for one engine call and never shared, as vLLM's OpenAI server builds its own:
        # AsyncLLM's deep copy of it took 2-3 % of the API process's GIL time at 32.
        params.skip_clone = True
    return params


class TokenTexts:
    """Text of the engine's token ids, decoded as vLLM's detokenizer and logprobs decode them.

    One token's text is cached: answers reuse a few hundred tokens (digits, brackets, labels).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._pieces: dict[int, str] = {}

    def piece(self, token_id: int) -> str:
        """One token's text, as vLLM's logprobs carry it (`decoded_token`)."""
        text = self._pieces.get(token_id)
        if text is None:
            text = self._pieces[token_id] = self.tokenizer.decode([token_id])
        return text

    def text(self, token_ids: list[int]) -> str:
        """The text of a finished output, special tokens skipped as the requests ask."""
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))


class VLLMBackend:
    """Backend over an in-process vLLM AsyncLLM; one engine per server process."""

    name = "vllm"

    def __init__(self, settings: Settings, model_dir: str, adapter: ModelAdapter) -> None:
        self._vllm = _import_vllm()
        self.settings = settings
        self.model_dir = str(model_dir)
        self.adapter = adapter
        self.engine: Any = None
        self._dead_reason: str | None = None
        self._inflight = 0
        self._max_inflight = 0
        self._engine_requests: set[str] = set()  # ids of the engine requests running now
        self._stats_task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the engine is bound to
        self._texts: TokenTexts | None = None  # decodes the outputs vLLM does not detokenize
        self._image_token_id: int | None = None  # `<|image_pad|>`: one per patch of the frame

    @property
    def health(self) -> BackendHealth:
        """stopped without an engine, dead after a fatal engine error (why), else ready."""
        if self.engine is None:
            return BackendHealth("stopped")
        if self._dead_reason is None and self.engine.errored:
            self._dead_reason = "the vLLM engine reports an error"
        if self._dead_reason is not None:
            return BackendHealth("dead", self._dead_reason)
        return BackendHealth("ready")

    @property
    def ready(self) -> bool:
        """True once the engine is up and has not died."""
        return self.health.ready

    @property
    def queue_depth(self) -> int:
        """Requests beyond what the engine runs at once (an estimate from in-flight count)."""
        return max(0, self._inflight - (self._max_inflight - self.settings.queue_size))

    def engine_args(self) -> dict[str, Any]:
        """The engine arguments this backend starts vLLM with (a plain dict)."""
        return engine_args_dict(self.settings, self.model_dir, self.adapter)

    async def start(self) -> None:
        """Build the AsyncLLM (loads the model, profiles memory, captures CUDA graphs)."""
        if self.engine is not None:
            return
        args = build_engine_args(self.engine_args(), self._vllm)
        log.info("starting vLLM %s AsyncLLM for %s", self._vllm.version, self.model_dir)
        # Built in a worker thread: loading, profiling and graph capture take minutes, and the
        # loop keeps answering /healthz meanwhile. Without a running loop in that thread,
        # AsyncLLM starts its output handler on this loop at the first generate().
        # As `vllm serve` builds it: the usage context picks the batch defaults, and AsyncLLM's
        # own (ENGINE_CONTEXT) gives 128 sequences and 2,048 tokens a step where vLLM's server
        # runs 1,024 and 8,192 (on H100/H200; on CPU both give 128 and 2,048).
        self.engine = await asyncio.to_thread(
            self._vllm.AsyncLLM.from_engine_args,
            args,
            usage_context=self._vllm.UsageContext.OPENAI_API_SERVER,
        )
        self.loop = asyncio.get_running_loop()
        self._dead_reason = None
        self._texts = TokenTexts(self.engine.get_tokenizer())
        hf_config = self.engine.vllm_config.model_config.hf_config
        self._image_token_id = getattr(hf_config, "image_token_id", None)
        scheduler = self.engine.vllm_config.scheduler_config
        per_engine = int(getattr(scheduler, "max_num_seqs", 0) or 256)
        # The engine runs max_num_seqs at once per DP rank; queue_size more may wait.
        self._max_inflight = per_engine * self.settings.data_parallel_size
        self._max_inflight += self.settings.queue_size
        self._stats_task = asyncio.create_task(self._log_stats_forever())

    async def stop(self) -> None:
        """Abort in-flight requests (they fail with BackendDead: 503), then shut the engine down.

        `AsyncLLM.shutdown()` alone would leave their outputs waiting until their deadlines; an
        abort finishes each with finish_reason "abort", which `_call` turns into BackendDead.
        """
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stats_task
            self._stats_task = None
        engine, self.engine = self.engine, None
        if engine is None:
            return
        running = sorted(self._engine_requests)
        if running:
            log.info("stopping vLLM: aborting %d in-flight engine requests", len(running))
            await self._abort(engine, running)
        await self._cancel_output_handler(engine)
        await asyncio.to_thread(engine.shutdown)  # joins engine processes: off the loop
        # Requests that reached the engine after the aborts above: with the output handler
        # gone, only an abort (output side; the engine side fails, it is dead) finishes them.
        late = sorted(self._engine_requests)
        if late:
            await self._abort(engine, late)

    @staticmethod
    async def _cancel_output_handler(engine: Any) -> None:
        """Cancel AsyncLLM's output-handler task on this loop before `shutdown()` runs.

        `AsyncLLM.shutdown()` stops the engine core first, whose output task then queues an
        EngineDeadError, and cancels the handler only afterwards (from our worker thread, so
        late): the handler often reads that error first and logs "AsyncLLM output_handler
        failed." with a traceback on every clean stop (vLLM issue #48745). Cancelled here, the
        handler is done before the engine core goes, and shutdown()'s own cancel is a no-op.
        """
        handler = getattr(engine, "output_handler", None)
        if not isinstance(handler, asyncio.Task) or handler.done():
            return
        if handler.get_loop() is not asyncio.get_running_loop():
            return  # not ours to cancel from here; shutdown() cancels it thread-safely
        handler.cancel()
        await asyncio.wait([handler])  # never raises: a cancel of stop() itself still lands

    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions under the constraint (think in two engine calls)."""
        if self.engine is None:
            raise BackendDead(NOT_STARTED)
        if not self.ready:
            raise BackendDead(f"{self.health.reason}; the server is restarting it")
        if self._inflight >= self._max_inflight:
            raise QueueFull(f"{self._inflight} requests in flight; try again later")
        self._inflight += 1
        try:
            if request.constraint.think:
                completions, prompt_tokens = await self._generate_think(request)
            else:
                completions, prompt_tokens = await self._generate_answer(request)
        finally:
            self._inflight -= 1
        return Generation(replicate(completions, max(1, request.n)), prompt_tokens)

    async def _generate_answer(self, request: GenerationRequest) -> tuple[list[Completion], int]:
        """One constrained engine call."""
        kwargs = answer_kwargs(request)
        out = await self._call(prompt_input(request.prompt, request.image), kwargs, request, "a")
        completions = [self._completion(o, kwargs) for o in out.outputs]
        return completions, len(out.prompt_token_ids or ())

    async def _generate_think(self, request: GenerationRequest) -> tuple[list[Completion], int]:
        """Phase 1: free think under its budget; phase 2: the JSON answer after each think."""
        kwargs = think_kwargs(request)
        first = await self._call(
            prompt_input(think_prompt(request.prompt), request.image), kwargs, request, "t"
        )
        thinks = [self._completion(o, kwargs) for o in first.outputs]
        continuations = [continuation_kwargs(request, i) for i in range(len(thinks))]
        answers = await asyncio.gather(
            *(
                self._call(
                    prompt_input(continuation_prompt(request.prompt, t.text), request.image),
                    continuations[i],
                    request,
                    f"a{i}",
                )
                for i, t in enumerate(thinks)
            )
        )
        completions = [
            join_think(t, self._completion(a.outputs[0], kw))
            for t, a, kw in zip(thinks, answers, continuations, strict=True)
        ]
        return completions, len(first.prompt_token_ids or ())

    def _completion(self, output: Any, kwargs: dict[str, Any]) -> Completion:
        """Translate one CompletionOutput of an engine call made with `kwargs`."""
        texts = self._texts
        if texts is None:
            raise BackendDead("the vLLM engine was stopped")
        detokenized = kwargs.get("detokenize", True)
        return completion_from_output(
            output, decode=texts.piece, decode_text=None if detokenized else texts.text
        )

    async def _call(
        self, prompt: dict[str, Any], kwargs: dict[str, Any], request: GenerationRequest, tag: str
    ) -> Any:
        """Run one engine request to its final output; abort it if the caller is cancelled."""
        engine = self.engine
        if engine is None:
            raise BackendDead("the vLLM engine was stopped")
        params = build_sampling_params(kwargs, self._vllm)
        request_id = f"{request.request_id or 'req'}-{uuid.uuid4().hex[:12]}-{tag}"
        final = None
        self._engine_requests.add(request_id)
        try:
            async for out in engine.generate(prompt, params, request_id):
                final = out
        except asyncio.CancelledError:
            # AsyncLLM.generate aborts when its consumer is cancelled; abort again to be sure.
            await self._abort(engine, request_id)
            raise
        except self._vllm.EngineDeadError as exc:
            self._dead_reason = f"the vLLM engine died: {exc}"
            raise BackendDead("the vLLM engine died; the server is restarting it") from exc
        except self._vllm.EngineGenerateError as exc:
            if self.engine is not engine:  # e.g. its input processing met the shut-down renderer
                raise BackendDead("the vLLM engine was stopped") from exc
            if engine.errored:
                self._dead_reason = f"the vLLM engine died: {exc.__cause__ or exc}"
                raise BackendDead("the vLLM engine died; the server is restarting it") from exc
            raise BackendError(f"vLLM failed the request: {exc.__cause__ or exc}") from exc
        except ValueError as exc:  # vLLM's validation (e.g. the prompt is over max_model_len)
            raise BackendError(f"vLLM refused the request: {exc}") from exc
        finally:
            self._engine_requests.discard(request_id)
        outputs = final.outputs if final is not None else []
        if not outputs or any(o.finish_reason == "abort" for o in outputs):
            if self.engine is not engine:
                raise BackendDead("the vLLM engine was stopped")
            raise BackendError("vLLM aborted the request or returned no output")
        self._check_frame(final, request)
        return final

    def _check_frame(self, out: Any, request: GenerationRequest) -> None:
        """The engine saw the image in the frame its boxes map from, or the answer is refused.

        The image tokens of the prompt vLLM ran are the frame's patches; another count means
        vLLM's processor resized to another frame (its pixel bounds differ from the adapter's)
        and every coordinate would be in the wrong frame.
        """
        image = request.image
        if image is None or self._image_token_id is None:
            return
        width, height = request.frame_size or image.size
        factor = self.adapter.patch_factor
        expected = (width // factor) * (height // factor)
        got = (out.prompt_token_ids or []).count(self._image_token_id)
        if got != expected:
            raise BackendError(
                f"vLLM's processor made {got} image tokens of a {image.width}x{image.height} "
                f"image; the {width}x{height} model frame has {expected}: check the processor's "
                "min/max pixels against the model's"
            )

    @staticmethod
    async def _abort(engine: Any, request_id: str | list[str]) -> None:
        """Abort engine requests, ignoring failures (they may be finished already)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(engine.abort(request_id))

    async def _log_stats_forever(self) -> None:
        """Log vLLM's throughput line periodically, as `vllm serve` does."""
        while self.engine is not None:
            await asyncio.sleep(STATS_INTERVAL_S)
            with contextlib.suppress(Exception):
                if self.engine is not None:
                    await self.engine.do_log_stats()
