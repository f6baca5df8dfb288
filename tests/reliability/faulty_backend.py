"""A fault-injecting wrapper around the REAL TransformersBackend.

Faults are injected where they happen in production: inside the generation worker thread
(`engine.generate`, called by the real backend's batch loop), or in the backend's readiness.

    real = TransformersBackend(settings, model_dir, adapter)
    faulty = FaultyBackend(real)
    app = create_app(settings, backend=faulty)
    faulty.fail_next(1)         # the next generation raises mid-request (after the model ran)
    faulty.hang = True          # generations block until their request is cancelled
    faulty.delay_s = 2.0        # every generation is slower by 2 s
    faulty.kill()               # the engine dies: ready is False until restarted
    faulty.only = is_visual_check   # faults hit only requests/jobs with a matching constraint
    faulty.overloaded = True    # generate() raises the real queue's QueueFull
    faulty.die = True           # the engine dies when a generation reaches the backend
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from boxguard.server.backends import BackendHealth, Generation, GenerationRequest, QueueFull
from boxguard.server.constraints import Constraint


def is_visual_check(constraint: Constraint | None) -> bool:
    """The visual re-check's yes|no constraint (a choice, not a JSON answer)."""
    return constraint is not None and bool(constraint.choices)


class InjectedFault(RuntimeError):
    """The error raised inside the worker thread by an injected fault."""


class FaultyBackend:
    """Delegates to a real backend; the test arms faults on it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.name = f"faulty-{real.name}"
        self.hang = False
        self.hang_limit_s = 60.0  # a hung generation gives up after this (never leak a thread)
        self.delay_s = 0.0
        self.unexpected_error = False  # raise a non-BackendError from generate()
        self.only: Callable[[Constraint | None], bool] | None = None  # None = every generation
        self.overloaded = False
        self.die = False
        self.starts = 0
        self.stops = 0
        self.generations = 0
        self.restart_allowed = threading.Event()  # set from the test thread
        self.restart_allowed.set()
        self.hangs_entered = threading.Event()
        self.hangs_released = threading.Event()
        self._failures = 0
        self._fail_before = False
        self._lock = threading.Lock()

    # --- fault control -------------------------------------------------------------------
    def fail_next(self, n: int = 1, *, before_model: bool = False) -> None:
        """The next `n` generations raise inside the worker (after the model ran, by default)."""
        with self._lock:
            self._failures = n
            self._fail_before = before_model

    def kill(self) -> None:
        """Engine death: the real backend stops being ready (as a crashed worker would).

        The restart waits for `allow_restart()` so a test can observe the dead state first.
        """
        self.restart_allowed.clear()
        self.real._health = BackendHealth("dead", "killed by the test")

    def allow_restart(self) -> None:
        """Let the server's supervisor bring the backend back."""
        self.restart_allowed.set()

    def reset(self) -> None:
        with self._lock:
            self._failures = 0
        self.hang = False
        self.delay_s = 0.0
        self.unexpected_error = False
        self.only = None
        self.overloaded = False
        self.die = False
        self.hangs_entered.clear()
        self.hangs_released.clear()

    @property
    def idle(self) -> bool:
        """No request queued or in a batch."""
        queue = self.real._queue
        return queue.depth == 0 and queue.in_batch == 0

    # --- Backend protocol ----------------------------------------------------------------
    @property
    def health(self) -> BackendHealth:
        return self.real.health  # type: ignore[no-any-return]

    @property
    def ready(self) -> bool:
        return bool(self.real.ready)

    @property
    def queue_depth(self) -> int:
        return int(self.real.queue_depth)

    async def start(self) -> None:
        while not self.restart_allowed.is_set():
            await asyncio.sleep(0.05)
        await self.real.start()
        self.starts += 1
        engine = self.real.engine
        engine.generate = self._wrap(engine.generate)

    async def stop(self) -> None:
        self.stops += 1
        await self.real.stop()

    async def generate(self, request: GenerationRequest) -> Generation:
        if self.unexpected_error:
            raise ValueError("unexpected backend bug at /srv/secret/path.py")
        if self._targets(request.constraint):
            if self.overloaded:
                raise QueueFull("request queue is full")
            if self.die:
                self.kill()  # the real backend now refuses as a dead engine does
        result: Generation = await self.real.generate(request)
        return result

    def _targets(self, constraint: Constraint | None) -> bool:
        return self.only is None or self.only(constraint)

    # --- the worker-thread side ----------------------------------------------------------
    def _take_failure(self) -> tuple[bool, bool]:
        with self._lock:
            if self._failures <= 0:
                return False, False
            self._failures -= 1
            return True, self._fail_before

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def generate(jobs: list[Any], params: Any) -> Any:
            self.generations += 1
            if not any(self._targets(job.constraint) for job in jobs):
                return original(jobs, params)
            if self.delay_s:
                time.sleep(self.delay_s)
            fail, before = self._take_failure()
            if fail and before:
                raise InjectedFault("injected fault before the model ran")
            if self.hang:
                self.hangs_entered.set()
                deadline = time.monotonic() + self.hang_limit_s
                # A hung decode that still honours the per-row cancellation flag, as HFEngine's
                # stopping criterion does between steps.
                while not all(job.cancelled() for job in jobs) and time.monotonic() < deadline:
                    time.sleep(0.02)
                self.hangs_released.set()
            result = original(jobs, params)
            if fail:
                raise InjectedFault("injected fault mid-generation")
            return result

        return generate
