"""What Client and AsyncClient share: configuration, request building, retries, error parsing.

The two clients differ only in I/O (house style of httpx): each runs the same loop of
``send → _outcome → _retry_delay → sleep`` with its own transport and sleep function.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from boxguard.guards.types import OutputMode
from boxguard.guards.wire import GroundRequest, Health
from boxguard.guards.wire_errors import human_message
from pydantic import ValidationError

from .errors import (
    BoxguardError,
    ConnectionFailed,
    ImageNotFound,
    InvalidRequest,
    Overloaded,
    ServerError,
    ServiceUnavailable,
    Timeout,
    error_from_response,
)
from .images import ImageInput, encode_image
from .results import GroundResult

__all__ = [
    "DEFAULT_URL",
    "BaseClient",
    "GroundItem",
    "RetryPolicy",
    "normalize_item",
    "progress_bar",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 120.0
RETRYABLE = (ConnectionFailed, Overloaded, ServiceUnavailable)
_VERSION = "0.1.0"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on connection errors, 429 and 503 with exponential backoff and jitter.

    The n-th retry (n = 0, 1, ...) waits ``min(max_backoff, backoff * 2**n)`` scaled by a random
    factor in ``[1 - jitter, 1]``, or the server's Retry-After (capped at ``max_retry_after``).

    Example:
        >>> RetryPolicy(retries=3, backoff=0.5, jitter=0.0).delay(2, None)
        2.0
        >>> RetryPolicy(retries=3).delay(0, 4.0)
        4.0
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 20.0
    jitter: float = 0.5
    max_retry_after: float = 60.0

    def delay(
        self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (1.0 - self.jitter * rand())


@dataclass(frozen=True)
class GroundItem:
    """One request of ``ground_many``: an image, an expression and per-item options."""

    image: ImageInput
    expression: str
    multiple: bool | None = None
    think: bool | None = None
    policy: dict[str, Any] | None = None


def normalize_item(item: object) -> GroundItem:
    """A GroundItem from a GroundItem, an (image, expression) pair or a dict."""
    if isinstance(item, GroundItem):
        return item
    if isinstance(item, Mapping):
        return GroundItem(
            image=item["image"],
            expression=item["expression"],
            multiple=item.get("multiple"),
            think=item.get("think"),
            policy=item.get("policy"),
        )
    if isinstance(item, tuple) and len(item) == 2:
        return GroundItem(image=item[0], expression=item[1])
    raise TypeError("ground_many items must be (image, expression) pairs, dicts or GroundItems")


@contextmanager
def progress_bar(
    total: int, *, enabled: bool = True, description: str = "grounding"
) -> Iterator[Callable[[], None]]:
    """Yield an `advance()` callable; draws a rich bar on stderr when enabled.

    Example:
        >>> with progress_bar(2, enabled=False) as advance:
        ...     advance(); advance()
    """
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


class BaseClient:
    """Configuration and the I/O-free half of the boxguard clients."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = (base_url or os.environ.get("BOXGUARD_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("BOXGUARD_API_KEY")
        self.timeout = timeout
        self.retry = RetryPolicy(retries=retries, backoff=backoff, max_backoff=max_backoff)
        self._random: Callable[[], float] = random.random
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"boxguard-client/{_VERSION}",
            **(headers or {}),
        }
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        """Arguments shared by httpx.Client and httpx.AsyncClient."""
        return {"base_url": self.base_url, "headers": self._headers, "timeout": self.timeout}

    @staticmethod
    def _payload(
        image: ImageInput,
        expression: str,
        *,
        multiple: bool,
        think: bool,
        policy: Mapping[str, Any] | None,
        return_raw: bool,
        output: OutputMode = "box",
    ) -> dict[str, Any]:
        """The JSON body of POST /ground, validated against the wire schema."""
        try:
            encoded = encode_image(image)
        except FileNotFoundError as exc:
            raise ImageNotFound(f"no such image file: {exc.filename}") from None
        fields: dict[str, Any] = {
            **encoded,
            "expression": expression,
            "multiple": multiple,
            "think": think,
            "return_raw": return_raw,
            "output": output,
        }
        if policy is not None:
            fields["policy"] = dict(policy)
        try:
            request = GroundRequest.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(human_message(error) for error in exc.errors(include_url=False))
            raise InvalidRequest(problems) from exc
        body = request.model_dump(exclude_none=True)
        if output == "box":  # not sent by default: servers before points refuse the field
            body.pop("output")
        return body

    @staticmethod
    def _body_kwargs(body: dict[str, Any], upload: bool) -> dict[str, Any]:
        """httpx's body arguments: JSON, or with `upload` the image as a multipart file part
        (no base64: a third smaller, so a file under the server's body limit fits it)."""
        image = body.get("image")
        if not upload or image is None or image.startswith("data:"):
            return {"json": body}
        data = {
            key: json.dumps(value) if isinstance(value, (dict, bool)) else str(value)
            for key, value in body.items()
            if key != "image"
        }
        return {"data": data, "files": {"image": ("image", base64.b64decode(image))}}

    @staticmethod
    def _request_timeout(timeout: float | None, default: float | None) -> httpx.Timeout:
        """The httpx timeout of one call: connect within 10 s, the rest within `timeout`."""
        seconds = default if timeout is None else timeout
        return httpx.Timeout(seconds, connect=min(10.0, seconds) if seconds else 10.0)

    @staticmethod
    def _transport_error(exc: httpx.TransportError) -> BoxguardError:
        """The SDK error for a failure below HTTP (no response)."""
        if isinstance(exc, httpx.ConnectTimeout):
            return ConnectionFailed(f"connect timeout: {exc}")
        if isinstance(exc, httpx.TimeoutException):
            return Timeout(f"no answer in time: {type(exc).__name__}")
        return ConnectionFailed(f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _outcome(response: httpx.Response) -> GroundResult | BoxguardError:
        """The result of a successful response, or the error of a failed one."""
        if response.status_code >= 400:
            return error_from_response(response)
        try:
            result = GroundResult.model_validate_json(response.content)
        except ValidationError as exc:
            return ServerError(
                f"malformed response: {exc.error_count()} schema errors",
                code="malformed_response",
                status_code=response.status_code,
                request_id=response.headers.get("X-Request-ID"),
            )
        result._request_id = response.headers.get("X-Request-ID")
        return result

    @staticmethod
    def _health(response: httpx.Response, *, ready: bool) -> Health:
        """The Health of /healthz or /readyz (a 503 from /readyz is 'not_ready', not an error)."""
        if ready and response.status_code == 503:
            try:
                return Health.model_validate_json(response.content)
            except ValidationError:
                return Health(status="not_ready")
        if response.status_code >= 400:
            raise error_from_response(response)
        return Health.model_validate_json(response.content)

    @staticmethod
    def _call_headers(request_id: str | None) -> dict[str, str]:
        """Per-call headers: X-Request-ID when the caller picked one."""
        return {"X-Request-ID": request_id} if request_id else {}

    def _retry_delay(self, attempt: int, error: BoxguardError) -> float | None:
        """Seconds to wait before retrying after `error`, or None to give up and raise it."""
        if not isinstance(error, RETRYABLE) or attempt >= self.retry.retries:
            return None
        return self.retry.delay(attempt, error.retry_after, self._random)
