"""A bounded request queue whose worker runs compatible requests together, off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .base import BackendDead, QueueFull

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Pending(Generic[T]):
    """A queued item and the future its caller awaits."""

    item: T
    key: Hashable
    future: asyncio.Future[Any] = field(repr=False)

    @property
    def cancelled(self) -> bool:
        """True when the caller stopped waiting (disconnect or deadline)."""
        return self.future.done()


class BatchQueue(Generic[T]):
    """Queue of at most `maxsize` items; the worker takes up to `max_batch` with the same key.

    `run_batch(items)` is awaited by the single worker and must return one result per item
    (or an exception instance for an item that failed on its own).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Pending[T]]], Awaitable[list[Any]]],
        *,
        maxsize: int,
        max_batch: int,
    ) -> None:
        self._run_batch = run_batch
        self._queue: asyncio.Queue[Pending[T]] = asyncio.Queue()
        self._maxsize = maxsize
        self._max_batch = max_batch
        self._held: list[Pending[T]] = []
        self._worker: asyncio.Task[None] | None = None
        self._batch: list[Pending[T]] = []

    @property
    def in_batch(self) -> int:
        """Items the worker is running now."""
        return len(self._batch)

    @property
    def depth(self) -> int:
        """Requests waiting, not yet taken by the worker."""
        return self._queue.qsize() + len(self._held)

    def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; queued and running items fail with BackendDead (a 503)."""
        self.fail(lambda _: True, BackendDead("the backend stopped"))
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def fail(self, match: Callable[[T], bool], error: BaseException) -> int:
        """Fail the queued and running items that `match`; returns how many.

        A failed item's future is done, so `Pending.cancelled` stops its rows in the engine.
        """
        failed = 0
        waiting = self._drain_all()
        for pending in [*self._batch, *waiting]:
            if not pending.future.done() and match(pending.item):
                pending.future.set_exception(error)
                failed += 1
        for pending in waiting:  # back in order, where the worker waits for them
            if not pending.future.done():
                self._queue.put_nowait(pending)
        return failed

    async def submit(self, item: T, key: Hashable) -> Any:
        """Queue an item and wait for its result; raises QueueFull when the queue is full."""
        if self.depth >= self._maxsize:
            raise QueueFull("request queue is full")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(item, key, future))
        return await future

    def _drain_all(self) -> list[Pending[T]]:
        items, self._held = self._held, []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _next_batch(self) -> list[Pending[T]]:
        """The oldest live item plus queued items with its key, up to max_batch."""
        while True:
            first = self._held.pop(0) if self._held else await self._queue.get()
            if not first.cancelled:
                break
        batch = [first]
        rest: list[Pending[T]] = []
        for pending in self._drain_all():
            if pending.cancelled:
                continue
            if pending.key == first.key and len(batch) < self._max_batch:
                batch.append(pending)
            else:
                rest.append(pending)
        self._held = rest
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            self._batch = batch
            try:
                results = await self._run_batch(batch)
            except asyncio.CancelledError:
                # Stopping mid-batch: its callers must not wait forever.
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(BackendDead("the backend stopped"))
                raise
            except Exception as exc:  # the batch failed as a whole: every caller sees it
                results = [exc] * len(batch)
            finally:
                self._batch = []
            if len(results) != len(batch):
                error = RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
                results = [error] * len(batch)
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
