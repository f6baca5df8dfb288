"""The Backend protocol and the request/result types every backend speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

    from ..constraints import Constraint


@dataclass
class GenerationRequest:
    """One prompt with one image already resized to the model frame, and its constraint."""

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


@runtime_checkable
class Backend(Protocol):
    """A model engine that generates constrained answers for images and prompts."""

    name: str

    @property
    def ready(self) -> bool:
        """True once started and able to serve."""
        ...

    async def start(self) -> None:
        """Load the model; returns when ready."""
        ...

    async def stop(self) -> None:
        """Release the model and finish or cancel in-flight work."""
        ...

    async def generate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions under `request.constraint`."""
        ...
