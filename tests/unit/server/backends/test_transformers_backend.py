"""TransformersBackend on the tiny checkpoint: lifecycle, think answers, sampling, queueing."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("xgrammar")

from boxguard.server.backends.base import (  # noqa: E402
    NOT_STARTED,
    BackendDead,
    BackendError,
    Completion,
    GenerationRequest,
    QueueFull,
    TokenChoice,
)
from boxguard.server.backends.hf_engine import (  # noqa: E402
    HFEngine,
    SequenceJob,
    SequenceResult,
)
from boxguard.server.backends.transformers_backend import (  # noqa: E402
    TransformersBackend,
    is_fatal,
)
from boxguard.server.constraints import yes_no_constraint  # noqa: E402
from boxguard.server.models import ADAPTERS, ModelAdapter  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from PIL import Image  # noqa: E402

THINK_ANSWER = re.compile(r"\A<think>(.*)</think>\n<answer>(.*)</answer>\Z", re.S)


def settings(**kw: object) -> Settings:
    base = dict(device="cpu", dtype="float32", max_new_tokens=48, think_max_tokens=8)
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


@asynccontextmanager
async def running(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine, **kw: object
) -> AsyncIterator[TransformersBackend]:
    backend = TransformersBackend(settings(**kw), str(tiny_checkpoint), adapter)
    backend._load = lambda: engine  # type: ignore[method-assign]
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


def image_for(adapter: ModelAdapter, size: tuple[int, int] = (168, 112)) -> Image.Image:
    frame = adapter.model_frame(*size)
    return Image.new("RGB", (frame.width, frame.height), "white")


def request(
    adapter: ModelAdapter,
    *,
    think: bool = False,
    n: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 48,
    seed: int | None = 0,
) -> GenerationRequest:
    image = image_for(adapter)
    frame = adapter.model_frame(*image.size)
    constraint = adapter.constraint(
        frame,
        multiple=False,
        think=think,
        max_detections=1,
        max_label_chars=6,
        max_tokens=max_tokens,
        think_max_tokens=8,
    )
    return GenerationRequest(
        prompt=adapter.prompt("the red circle", think=think),
        image=image,
        constraint=constraint,
        n=n,
        temperature=temperature,
        seed=seed,
    )


def check_json_completion(completion: Completion) -> None:
    assert "".join(t.text for t in completion.tokens) == completion.text
    assert completion.finish_reason == "stop"
    value = json.loads(completion.text)
    assert isinstance(value, list) and len(value) <= 1


# -- lifecycle ---------------------------------------------------------------------------------


async def test_start_generate_stop_with_a_real_load(
    tiny_checkpoint: Path, adapter: ModelAdapter
) -> None:
    backend = TransformersBackend(settings(), str(tiny_checkpoint), adapter)
    assert not backend.ready and backend.health.state == "stopped"
    with pytest.raises(BackendDead, match=NOT_STARTED):
        await backend.generate(request(adapter))
    await backend.start()
    try:
        assert backend.ready
        assert backend.engine is not None
        generation = await backend.generate(request(adapter))
        assert len(generation.completions) == 1
        check_json_completion(generation.completions[0])
        assert generation.generated_tokens == len(generation.completions[0].tokens) > 0
    finally:
        await backend.stop()
    assert not backend.ready
    assert backend.engine is None
    with pytest.raises(BackendDead):
        await backend.generate(request(adapter))


# -- think -------------------------------------------------------------------------------------


async def test_think_answer_shape(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    async with running(tiny_checkpoint, adapter, engine) as backend:
        generation = await backend.generate(request(adapter, think=True))
    (completion,) = generation.completions
    match = THINK_ANSWER.match(completion.text)
    assert match, completion.text
    assert "</think>" not in match.group(1)
    assert isinstance(json.loads(match.group(2)), list)
    assert "".join(t.text for t in completion.tokens) == completion.text
    assert all(t.logprob <= 0.0 for t in completion.tokens)
    assert completion.finish_reason == "stop"
    model_tokens = [t for t in completion.tokens if t.token_id >= 0]
    forced = [t for t in completion.tokens if t.token_id < 0]
    assert all(t.logprob == 0.0 for t in forced)
    assert forced[0].text == "<think>" and forced[-1].text == "</answer>"
    assert any(t.text.endswith("</think>\n<answer>") for t in forced)
    # the think phase stays inside its token budget (think_max_tokens=8)
    think_tokens = completion.tokens[1 : completion.tokens.index(forced[-2])]
    assert len([t for t in think_tokens if t.token_id >= 0]) <= 8
    assert model_tokens


async def test_think_sampled_n3(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    async with running(tiny_checkpoint, adapter, engine) as backend:
        generation = await backend.generate(
            request(adapter, think=True, n=3, temperature=1.0, seed=5)
        )
    assert len(generation.completions) == 3
    for completion in generation.completions:
        match = THINK_ANSWER.match(completion.text)
        assert match, completion.text
        json.loads(match.group(2))
        assert "".join(t.text for t in completion.tokens) == completion.text
    assert len({c.text for c in generation.completions}) >= 2


def test_think_body_is_cut_at_a_close_tag_inside_a_token() -> None:
    """`</think>` may start inside a token: the covered tokens stay, the rest is bridged."""

    class Engine:
        def __init__(self) -> None:
            self.calls: list[tuple[list, object]] = []

        def generate(self, jobs: list, params: object) -> list[SequenceResult]:
            self.calls.append((jobs, params))
            if len(self.calls) == 1:
                tokens = [
                    TokenChoice(1, "I see", -0.5),
                    TokenChoice(2, " it</", -0.2),
                    TokenChoice(3, "think>", -0.1),
                ]
                return [SequenceResult("I see it</think>", tokens, "stop") for _ in jobs]
            return [SequenceResult("[]", [TokenChoice(4, "[]", -0.3)], "stop") for _ in jobs]

    adapter = ADAPTERS["qwen2_5_vl"]()
    backend = TransformersBackend(settings(), "unused", adapter)
    engine = Engine()
    req = request(adapter, think=True)
    jobs = [SequenceJob("P", None, req.constraint)]
    ((completion, _),) = backend._think_then_answer(engine, jobs, req)  # type: ignore[arg-type]
    texts = [t.text for t in completion.tokens]
    assert texts == ["<think>", "I see", " it", "</think>\n<answer>", "[]", "</answer>"]
    assert engine.calls[0][1].stop_strings == ("</think>",)
    assert engine.calls[1][0][0].prompt == "P<think>I see it</think>\n<answer>"
    assert completion.text == "<think>I see it</think>\n<answer>[]</answer>"


# -- sampling ----------------------------------------------------------------------------------


async def test_n3_sampled_completions(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    async with running(tiny_checkpoint, adapter, engine) as backend:
        generation = await backend.generate(request(adapter, n=3, temperature=1.0, seed=11))
    assert len(generation.completions) == 3
    for completion in generation.completions:
        check_json_completion(completion)


async def test_greedy_n3_decodes_once_and_copies(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    """temperature 0 is greedy whatever n: one decoded row, n identical completions."""
    rows: list[int] = []
    original = engine.generate

    def counting(jobs: list[SequenceJob], params: object) -> list[SequenceResult]:
        rows.append(len(jobs))
        return original(jobs, params)  # type: ignore[arg-type]

    async with running(tiny_checkpoint, adapter, engine) as backend:
        engine.generate = counting  # type: ignore[method-assign]
        try:
            generation = await backend.generate(request(adapter, n=3, temperature=0.0))
        finally:
            del engine.generate
    assert rows == [1]
    assert len(generation.completions) == 3
    assert len({c.text for c in generation.completions}) == 1
    assert generation.completions[1].tokens is not generation.completions[0].tokens


# -- concurrency -------------------------------------------------------------------------------


async def test_concurrent_requests_are_all_answered(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    async with running(tiny_checkpoint, adapter, engine, max_batch_size=8) as backend:
        results = await asyncio.gather(*(backend.generate(request(adapter)) for _ in range(6)))
        assert backend.queue_depth == 0
    texts = {r.completions[0].text for r in results}
    assert len(texts) == 1  # greedy: batching does not change the answer
    for generation in results:
        check_json_completion(generation.completions[0])


async def test_small_queue_rejects_the_overflow(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    async with running(tiny_checkpoint, adapter, engine, queue_size=2) as backend:
        results = await asyncio.gather(
            *(backend.generate(request(adapter)) for _ in range(6)), return_exceptions=True
        )
    full = [r for r in results if isinstance(r, QueueFull)]
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert full and answered
    assert len(full) + len(answered) == 6
    for generation in answered:
        check_json_completion(generation.completions[0])


async def test_each_request_keeps_its_own_token_budget_in_a_batch(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    yes_no = GenerationRequest(
        prompt=adapter.chat("Is it red? Answer yes or no."),
        image=image_for(adapter),
        constraint=yes_no_constraint(),
    )
    async with running(tiny_checkpoint, adapter, engine) as backend:
        check, grounding = await asyncio.gather(
            backend.generate(yes_no), backend.generate(request(adapter))
        )
    # The yes|no's budget is its first token; the answer batched beside it keeps its own.
    text = check.completions[0].text
    assert len(check.completions[0].tokens) == 1
    assert text and ("yes".startswith(text) or "no".startswith(text))
    check_json_completion(grounding.completions[0])


async def test_prompt_tokens_are_counted(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    async with running(tiny_checkpoint, adapter, engine) as backend:
        generation = await backend.generate(request(adapter, max_tokens=16))
    assert generation.prompt_tokens > 0


# -- shutdown, abort and fatal errors ----------------------------------------------------------


def _slow(engine: HFEngine, started: asyncio.Event, loop: asyncio.AbstractEventLoop) -> object:
    """engine.generate that signals its start and runs until its rows are cancelled."""
    original = engine.generate

    def generate(jobs: list[SequenceJob], params: object) -> list[SequenceResult]:
        loop.call_soon_threadsafe(started.set)
        while not all(job.cancelled() for job in jobs):
            threading.Event().wait(0.01)
        return original(jobs, params)  # type: ignore[arg-type]

    return generate


async def test_stop_answers_in_flight_and_queued_requests_backend_dead(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    backend = TransformersBackend(settings(max_batch_size=1), str(tiny_checkpoint), adapter)
    backend._load = lambda: engine  # type: ignore[method-assign]
    await backend.start()
    started = asyncio.Event()
    engine.generate = _slow(engine, started, asyncio.get_running_loop())  # type: ignore[method-assign]
    try:
        running_one = asyncio.create_task(backend.generate(request(adapter)))
        await asyncio.wait_for(started.wait(), 10)
        queued = asyncio.create_task(backend.generate(request(adapter, max_tokens=40)))
        await asyncio.sleep(0.05)
        assert backend.queue_depth == 1
        await asyncio.wait_for(backend.stop(), 10)
    finally:
        del engine.generate
    for task in (running_one, queued):
        with pytest.raises(BackendDead):
            await task
    assert not backend.ready


async def test_cancelling_a_generation_frees_the_worker(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine
) -> None:
    started = asyncio.Event()
    async with running(tiny_checkpoint, adapter, engine) as backend:
        engine.generate = _slow(engine, started, asyncio.get_running_loop())  # type: ignore[method-assign]
        try:
            task = asyncio.create_task(backend.generate(request(adapter)))
            await asyncio.wait_for(started.wait(), 10)
            task.cancel()  # how a request's deadline or its client's disconnect stops it
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            del engine.generate
        # The row was cancelled between decode steps: the worker is free again.
        assert backend.ready
        check_json_completion((await backend.generate(request(adapter))).completions[0])


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (MemoryError(), True),
        (ValueError("one bad batch"), False),
    ],
)
async def test_fatal_engine_error_turns_the_backend_not_ready(
    tiny_checkpoint: Path, adapter: ModelAdapter, engine: HFEngine, error: Exception, fatal: bool
) -> None:
    assert is_fatal(error) is fatal

    def failing(jobs: list[SequenceJob], params: object) -> list[SequenceResult]:
        raise error

    async with running(tiny_checkpoint, adapter, engine) as backend:
        engine.generate = failing  # type: ignore[method-assign]
        try:
            with pytest.raises(BackendDead if fatal else BackendError):
                await backend.generate(request(adapter))
        finally:
            del engine.generate
        assert backend.ready is not fatal
        assert backend.health.state == ("dead" if fatal else "ready")
