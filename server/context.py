"""One request on its way through the server: id, deadline, policy in force, timings, cancel.

The HTTP layer makes one `RequestContext` when the body has arrived; the service carries it
through decode → generate → prepare → evidence → finish, so no stage takes a loose id,
deadline or timings dict of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from boxguard.guards.wire import PolicyInForce

from .metrics import Metrics

# Why a request's work was stopped before it finished.
CancelCause = Literal["client_disconnect", "deadline"]


@dataclass
class RequestContext:
    """The state one request carries down the path.

    Example:
        >>> ctx = RequestContext.begin("r1", timeout_s=30.0)
        >>> 29.0 < ctx.remaining_s() <= 30.0
        True
    """

    id: str
    deadline: float  # time.monotonic() by which the answer must be ready
    timeout_s: float
    timings: dict[str, float] = field(default_factory=dict)
    policy: PolicyInForce | None = None  # the server's policy with the request's overrides
    cancel_cause: CancelCause | None = None

    @classmethod
    def begin(cls, request_id: str, *, timeout_s: float) -> RequestContext:
        """A context whose deadline is `timeout_s` from now."""
        return cls(id=request_id, deadline=time.monotonic() + timeout_s, timeout_s=timeout_s)

    def remaining_s(self) -> float:
        """Seconds left before the deadline (0 once it passed)."""
        return max(0.0, self.deadline - time.monotonic())

    def sub_id(self, suffix: str) -> str:
        """The id of one of this request's evidence generations, e.g. `r1-visual0`."""
        return f"{self.id}-{suffix}"

    @contextmanager
    def stage(self, name: str, metrics: Metrics) -> Iterator[None]:
        """Time the block as stage `name`: in the response's timings and the stage histogram."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.timings[name] = round(elapsed * 1000, 3)
            metrics.stage_seconds.labels(name).observe(elapsed)
