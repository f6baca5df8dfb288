"""BatchQueue: bounded, batches same-key items, skips cancelled ones, per-item and batch errors."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import pytest
from boxguard.server.backends.base import BackendDead, QueueFull
from boxguard.server.backends.batching import BatchQueue, Pending


class Recorder:
    """A run_batch coroutine that records each batch; optionally waits on a gate first."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[tuple[Any, Hashable]]] = []
        self.gate = gate
        self.started = asyncio.Event()

    async def __call__(self, batch: list[Pending[Any]]) -> list[Any]:
        self.batches.append([(p.item, p.key) for p in batch])
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        results: list[Any] = []
        for p in batch:
            if isinstance(p.item, BaseException):
                results.append(p.item)  # this item fails on its own
            else:
                results.append(("done", p.item))
        return results


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_single_item_round_trip() -> None:
    rec = Recorder()
    queue: BatchQueue[str] = BatchQueue(rec, maxsize=4, max_batch=4)
    queue.start()
    try:
        assert await queue.submit("a", key=1) == ("done", "a")
        assert rec.batches == [[("a", 1)]]
    finally:
        await queue.stop()


async def test_same_key_items_are_batched_up_to_max_batch() -> None:
    rec = Recorder()
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=3)
    queue.start()
    try:
        results = await asyncio.gather(*(queue.submit(i, key="k") for i in range(7)))
        assert results == [("done", i) for i in range(7)]
        assert [[item for item, _ in b] for b in rec.batches] == [[0, 1, 2], [3, 4, 5], [6]]
    finally:
        await queue.stop()


async def test_different_keys_run_in_separate_batches_oldest_first() -> None:
    rec = Recorder()
    queue: BatchQueue[str] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    try:
        items = [("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("c1", "C")]
        results = await asyncio.gather(*(queue.submit(i, key=k) for i, k in items))
        assert results == [("done", i) for i, _ in items]
        assert rec.batches == [
            [("a1", "A"), ("a2", "A")],
            [("b1", "B"), ("b2", "B")],
            [("c1", "C")],
        ]
        for batch in rec.batches:
            assert len({key for _, key in batch}) == 1
    finally:
        await queue.stop()


async def test_items_arriving_during_a_batch_form_the_next_batch() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    try:
        first = asyncio.ensure_future(queue.submit(0, key="k"))
        await rec.started.wait()
        rest = [asyncio.ensure_future(queue.submit(i, key="k")) for i in (1, 2)]
        await settle()
        assert queue.depth == 2
        assert queue.in_batch == 1
        gate.set()
        assert await first == ("done", 0)
        assert await asyncio.gather(*rest) == [("done", 1), ("done", 2)]
        assert [[i for i, _ in b] for b in rec.batches] == [[0], [1, 2]]
        assert queue.in_batch == 0 and queue.depth == 0
    finally:
        gate.set()
        await queue.stop()


async def test_full_queue_raises_queue_full() -> None:
    rec = Recorder()
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=2, max_batch=8)  # worker not started
    waiting = [asyncio.ensure_future(queue.submit(i, key="k")) for i in range(2)]
    await settle()
    assert queue.depth == 2
    with pytest.raises(QueueFull):
        await queue.submit(99, key="k")
    queue.start()
    assert await asyncio.gather(*waiting) == [("done", 0), ("done", 1)]
    assert [[i for i, _ in b] for b in rec.batches] == [[0, 1]]
    await queue.stop()


async def test_in_flight_items_do_not_count_against_the_bound() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=1, max_batch=1)
    queue.start()
    try:
        running = asyncio.ensure_future(queue.submit(0, key="k"))
        await rec.started.wait()
        queued = asyncio.ensure_future(queue.submit(1, key="k"))
        await settle()
        with pytest.raises(QueueFull):
            await queue.submit(2, key="k")
        gate.set()
        assert await running == ("done", 0)
        assert await queued == ("done", 1)
    finally:
        gate.set()
        await queue.stop()


async def test_gather_over_capacity_some_rejected_rest_answered() -> None:
    rec = Recorder()
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=3, max_batch=8)
    queue.start()
    try:
        results = await asyncio.gather(
            *(queue.submit(i, key="k") for i in range(6)), return_exceptions=True
        )
        full = [r for r in results if isinstance(r, QueueFull)]
        done = [r for r in results if not isinstance(r, BaseException)]
        assert len(full) == 3 and len(done) == 3
    finally:
        await queue.stop()


async def test_cancelled_items_are_skipped() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    try:
        blocker = asyncio.ensure_future(queue.submit(0, key="other"))
        await rec.started.wait()
        tasks = {i: asyncio.ensure_future(queue.submit(i, key="k")) for i in (1, 2, 3, 4)}
        await settle()
        tasks[1].cancel()  # the oldest queued item: exercises the skip of a cancelled head
        tasks[3].cancel()
        await settle()
        gate.set()
        assert await blocker == ("done", 0)
        assert await tasks[2] == ("done", 2)
        assert await tasks[4] == ("done", 4)
        for i in (1, 3):
            with pytest.raises(asyncio.CancelledError):
                await tasks[i]
        ran = [i for b in rec.batches for i, _ in b]
        assert ran == [0, 2, 4]
    finally:
        gate.set()
        await queue.stop()


async def test_caller_deadline_cancels_its_item() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    try:
        blocker = asyncio.ensure_future(queue.submit(0, key="k"))
        await rec.started.wait()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(queue.submit(1, key="k"), timeout=0.01)
        gate.set()
        assert await blocker == ("done", 0)
        assert await queue.submit(2, key="k") == ("done", 2)
        assert [i for b in rec.batches for i, _ in b] == [0, 2]
    finally:
        gate.set()
        await queue.stop()


async def test_per_item_exception_fails_only_that_item() -> None:
    rec = Recorder()
    queue: BatchQueue[Any] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    try:
        boom = ValueError("bad item")
        results = await asyncio.gather(
            queue.submit("a", key="k"),
            queue.submit(boom, key="k"),
            queue.submit("c", key="k"),
            return_exceptions=True,
        )
        assert results[0] == ("done", "a")
        assert results[1] is boom
        assert results[2] == ("done", "c")
        assert len(rec.batches) == 1
    finally:
        await queue.stop()


async def test_whole_batch_exception_reaches_every_caller_and_the_worker_survives() -> None:
    calls: list[int] = []

    async def run_batch(batch: list[Pending[int]]) -> list[Any]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("engine exploded")
        return [p.item * 10 for p in batch]

    queue: BatchQueue[int] = BatchQueue(run_batch, maxsize=16, max_batch=8)
    queue.start()
    try:
        results = await asyncio.gather(
            *(queue.submit(i, key="k") for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert len({id(r) for r in results}) == 1
        assert await queue.submit(5, key="k") == 50  # the worker kept running
        assert calls == [3, 1]
        assert queue.in_batch == 0
    finally:
        await queue.stop()


async def test_stop_fails_queued_items() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=1)
    queue.start()
    running = asyncio.ensure_future(queue.submit(0, key="k"))
    await rec.started.wait()
    queued = [asyncio.ensure_future(queue.submit(i, key=k)) for i, k in [(1, "k"), (2, "x")]]
    await settle()
    assert queue.depth == 2
    await queue.stop()
    for task in [running, *queued]:
        with pytest.raises(BackendDead):
            await asyncio.wait_for(task, timeout=1)
    assert queue.depth == 0
    gate.set()
    running.cancel()


async def test_stop_fails_held_items_too() -> None:
    """Items set aside (other key) while a batch runs are failed by stop() as well."""
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    first = [asyncio.ensure_future(queue.submit(i, key=k)) for i, k in [(0, "a"), (1, "b")]]
    await rec.started.wait()  # batch [0] runs, item 1 is held
    await settle()
    assert queue.depth == 1
    await queue.stop()
    with pytest.raises(BackendDead):
        await asyncio.wait_for(first[1], timeout=1)
    gate.set()
    first[0].cancel()


async def test_stop_fails_in_flight_items() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=8)
    queue.start()
    running = asyncio.ensure_future(queue.submit(0, key="k"))
    await rec.started.wait()
    await queue.stop()
    try:
        done, _ = await asyncio.wait({running}, timeout=0.5)
        assert running in done, "the caller of the in-flight batch was never answered"
        assert isinstance(running.exception(), BackendDead)  # a 503, not a cancellation
    finally:
        running.cancel()
        gate.set()


async def test_start_is_idempotent_and_restartable() -> None:
    rec = Recorder()
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=4, max_batch=4)
    queue.start()
    queue.start()
    assert await queue.submit(1, key="k") == ("done", 1)
    await queue.stop()
    queue.start()
    assert await queue.submit(2, key="k") == ("done", 2)
    await queue.stop()
    assert len(rec.batches) == 2


async def test_fail_answers_only_the_matching_items_and_the_rest_still_run() -> None:
    gate = asyncio.Event()
    rec = Recorder(gate)
    queue: BatchQueue[int] = BatchQueue(rec, maxsize=16, max_batch=1)
    queue.start()
    try:
        running = asyncio.ensure_future(queue.submit(0, key="k"))
        await rec.started.wait()
        queued = [asyncio.ensure_future(queue.submit(i, key="k")) for i in (1, 2, 3)]
        await settle()
        assert queue.fail(lambda item: item in (0, 2), QueueFull("gone")) == 2
        for task in (running, queued[1]):
            with pytest.raises(QueueFull):
                await asyncio.wait_for(task, timeout=1)
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(queued[0], queued[2]), 2) == [
            ("done", 1),
            ("done", 3),
        ]
    finally:
        await queue.stop()
