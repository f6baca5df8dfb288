"""Exceptions raised by the boxguard SDK, one per kind of failure a caller handles differently.

Every error carries the server's problem ``code``, its ``detail`` and the ``request_id`` (from the
problem body or the ``X-Request-ID`` header), so a failure can be traced in the server's logs.

Example:
    >>> from boxguard.clients import Client, Overloaded
    >>> try:  # doctest: +SKIP
    ...     Client().ground("cat.jpg", "the cat")
    ... except Overloaded as exc:
    ...     print(exc.code, exc.retry_after, exc.request_id)
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
from boxguard.guards.wire import Problem

__all__ = [
    "BadRequest",
    "BoxguardError",
    "ConnectionFailed",
    "ImageNotFound",
    "InvalidRequest",
    "Overloaded",
    "PayloadTooLarge",
    "ServerError",
    "ServiceUnavailable",
    "Timeout",
    "Unauthorized",
    "error_from_response",
    "parse_retry_after",
]


class BoxguardError(Exception):
    """Base of every SDK error.

    Example:
        >>> err = BoxguardError("queue full", code="overloaded", status_code=429)
        >>> (err.code, err.status_code, str(err))
        ('overloaded', 429, '[overloaded] queue full')
    """

    default_code = "error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        problem: Problem | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.detail = detail
        self.code = code or self.default_code
        self.status_code = status_code
        self.request_id = request_id
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        """Human-readable one-liner: code, detail, the server's field errors, request id."""
        text = f"[{self.code}] {self.detail}".rstrip()
        fields = [str(e.get("msg")) for e in (self.problem.errors or [])] if self.problem else []
        fields = [msg for msg in fields if msg not in self.detail]  # the detail may list them
        if fields:
            text += ": " + "; ".join(fields)
        if self.request_id:
            text += f" (request {self.request_id})"
        return text


class BadRequest(BoxguardError):
    """The server refused the request as invalid (400, 403, 404, 415, 422, other 4xx)."""

    default_code = "bad_request"


class InvalidRequest(BadRequest, ValueError):
    """The request fails the wire schema; raised before anything is sent (as the server's 422).

    Example:
        >>> from boxguard.clients import Client
        >>> Client().ground("cat.jpg", "  ")  # doctest: +SKIP
        Traceback (most recent call last):
        InvalidRequest: [validation_error] expression is blank
    """

    default_code = "validation_error"


class ImageNotFound(BoxguardError, FileNotFoundError):
    """The image path given to the SDK names no file; raised before anything is sent."""

    default_code = "image_not_found"


class Unauthorized(BoxguardError):
    """The API key is missing or wrong (401)."""

    default_code = "unauthorized"


class PayloadTooLarge(BoxguardError):
    """The body or the image is over the server's limits (413)."""

    default_code = "payload_too_large"


class Overloaded(BoxguardError):
    """The server's queue is full (429); retried automatically, honouring Retry-After."""

    default_code = "overloaded"


class ServiceUnavailable(BoxguardError):
    """The model backend is not ready (503); retried automatically, honouring Retry-After."""

    default_code = "backend_unavailable"


class ServerError(BoxguardError):
    """The server failed (500 and other 5xx)."""

    default_code = "internal_error"


class Timeout(BoxguardError):
    """The request timed out on the client (no answer in time) or on the server (504)."""

    default_code = "timeout"


class ConnectionFailed(BoxguardError):
    """The server could not be reached (refused, DNS, connection dropped)."""

    default_code = "connection_failed"


_BY_STATUS: dict[int, type[BoxguardError]] = {
    401: Unauthorized,
    413: PayloadTooLarge,
    429: Overloaded,
    503: ServiceUnavailable,
    504: Timeout,
}


def error_class_for(status: int) -> type[BoxguardError]:
    """The SDK exception class for an HTTP error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return BadRequest


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None.

    Example:
        >>> parse_retry_after("3")
        3.0
        >>> parse_retry_after(None) is None
        True
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _problem_from(response: httpx.Response) -> Problem | None:
    """The problem+json body of an error response, if it is one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    body.setdefault("status", response.status_code)
    body.setdefault("title", response.reason_phrase or "error")
    body.setdefault("code", error_class_for(response.status_code).default_code)
    try:
        return Problem.model_validate(body)
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> BoxguardError:
    """Map an error response (status >= 400) to the matching SDK exception.

    Example:
        >>> import httpx
        >>> r = httpx.Response(429, json={"title": "busy", "status": 429, "code": "overloaded"},
        ...                    headers={"Retry-After": "2", "X-Request-ID": "abc"})
        >>> err = error_from_response(r)
        >>> (type(err).__name__, err.retry_after, err.request_id)
        ('Overloaded', 2.0, 'abc')
    """
    cls = error_class_for(response.status_code)
    problem = _problem_from(response)
    request_id = response.headers.get("X-Request-ID")
    if problem is not None:
        detail = problem.detail or problem.title
        code: str | None = problem.code
        request_id = problem.request_id or request_id
    else:
        text = response.text.strip()
        detail = text[:500] if text else (response.reason_phrase or f"HTTP {response.status_code}")
        code = None
    return cls(
        detail,
        code=code,
        status_code=response.status_code,
        request_id=request_id,
        problem=problem,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
