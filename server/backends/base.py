"""The Backend protocol and the request/result types every backend speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

    from ..constraints import Constraint


@dataclass
class GenerationRequest:
    """One prompt with one image already resized to the model frame, and its constraint.

    `temperature == 0` is greedy whatever `n`: the n completions are identical copies of one
    decode. `temperature > 0` samples n independent completions (see `decoding`).
    """

    prompt: str
    image: Image.Image | None
    constraint: Constraint
    request_id: str = ""
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool = True


@dataclass
class TokenChoice:
    """One generated token, its text and its logprob renormalized under the constraint."""

    token_id: int
    text: str
    logprob: float


@dataclass
class Completion:
    """One sampled answer."""

    text: str
    tokens: list[TokenChoice] = field(default_factory=list)
    finish_reason: str = "stop"


@dataclass
class Generation:
    """All completions of one request and the token counts."""

    completions: list[Completion]
    prompt_tokens: int = 0

    @property
    def generated_tokens(self) -> int:
        """Tokens generated over all completions."""
        return sum(len(c.tokens) for c in self.completions)


class BackendError(RuntimeError):
    """A backend failed to answer; the server answers 503 with Retry-After."""


class BackendDead(BackendError):
    """The backend is no longer usable until restarted."""


class QueueFull(BackendError):
    """The backend's bounded queue is full; the server answers 429."""


class Aborted(BackendError):
    """The generation was stopped by `Backend.abort` before it finished."""


def belongs_to(generation_id: str, request_id: str) -> bool:
    """Whether a generation is the request's own or one of its evidence calls (`id-…`).

    Example:
        >>> belongs_to("r1-visual0", "r1"), belongs_to("r10", "r1")
        (True, False)
    """
    return generation_id == request_id or generation_id.startswith(request_id + "-")


@runtime_checkable
class Backend(Protocol):
    """A model engine that generates constrained answers for images and prompts.

    The app uses exactly these members. `start` and `stop` keep the event loop free (model
    loads and engine shutdowns run in worker threads) so /healthz answers during a restart.
    `stop` answers every in-flight `generate` with `BackendDead` (the client gets a 503).
    `ready` turns False after a fatal engine error; the app's supervisor then restarts it.
    """

    name: str

    @property
    def ready(self) -> bool:
        """True once started and able to serve; False after a fatal error or `stop`."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests accepted but not yet running on the engine."""
        ...

    async def start(self) -> None:
        """Load the model; returns when ready."""
        ...

    async def stop(self) -> None:
        """Release the model; in-flight requests fail with BackendDead."""
        ...

    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions under `request.constraint`.

        Raises QueueFull when the backend is at capacity, BackendDead when it is not running,
        Aborted after `abort`, BackendError for a failure of this request alone.
        """
        ...

    async def abort(self, request_id: str) -> None:
        """Stop the request's queued or running generations (see `belongs_to`); they raise
        Aborted."""
        ...
