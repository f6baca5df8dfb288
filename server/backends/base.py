"""The Backend protocol and the request/result types every backend speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

    from ..constraints import Constraint


@dataclass
class GenerationRequest:
    """One prompt with one image in the model frame, and its constraint.

    The image is resized to the frame already, unless `frame_size` is set: then the engine's
    own processor resizes it to that frame (`frame_resizer=engine`, the vllm backend).

    `temperature == 0` is greedy whatever `n`: the n completions are identical copies of one
    decode. `temperature > 0` samples n independent completions (see `decoding`).
    `prompt` is the full chat-template text for in-process engines; `user_text` is the user
    turn it was rendered from (`ModelAdapter.chat(user_text)`), for backends that send chat
    messages (the openai backend adds the adapter's system prompt and the image).
    """

    prompt: str
    image: Image.Image | None
    constraint: Constraint
    user_text: str = ""
    request_id: str = ""
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool = True
    frame_size: tuple[int, int] | None = None


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


class UpstreamInvalid(BackendError):
    """An upstream server answered something that is not a chat completion; the server answers
    502 upstream_error."""


# A backend's state, as `EngineClient` tells is_running / errored / dead apart.
BackendState = Literal["starting", "ready", "dead", "stopped"]


@dataclass(frozen=True)
class BackendHealth:
    """What a backend can say about itself: its state and, unless ready, why.

    `dead` means a fatal engine error (the reason names it): the app's supervisor restarts it.
    `stopped` is before `start` and after `stop`.
    """

    state: BackendState
    reason: str | None = None

    @property
    def ready(self) -> bool:
        """Whether requests can be served."""
        return self.state == "ready"


NOT_STARTED = "the backend is not started"


@runtime_checkable
class Backend(Protocol):
    """A model engine that generates constrained answers for images and prompts.

    The app uses exactly these members. `start` and `stop` keep the event loop free (model
    loads and engine shutdowns run in worker threads) so /healthz answers during a restart.
    `stop` answers every in-flight `generate` with `BackendDead` (the client gets a 503).
    `health` turns `dead` after a fatal engine error; the app's supervisor then restarts it.
    A caller stops a generation by cancelling its `generate` task: each backend then frees
    the generation's slot (the transformers batch row, the vLLM engine request).
    """

    name: str

    @property
    def health(self) -> BackendHealth:
        """The state: starting, ready, dead or stopped, and why when dead."""
        ...

    @property
    def ready(self) -> bool:
        """`health.ready`: True once started and able to serve."""
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

        Raises QueueFull when the backend is at capacity, BackendDead when it is not running
        (message NOT_STARTED before `start`), BackendError for a failure of this request alone.
        """
        ...
