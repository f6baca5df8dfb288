"""boxguard Python SDK: sync and async clients, typed results, errors and evaluation.

Light: imports httpx, pydantic and Pillow only (never torch, transformers, vLLM or FastAPI).

Example:
    >>> from boxguard.clients import Client
    >>> with Client() as client:  # doctest: +SKIP
    ...     result = client.ground("street.jpg", "the red car on the left")
    ...     result.draw("street.jpg").save("out.png")
"""

from __future__ import annotations

from boxguard.guards.types import CheckResult, Detection
from boxguard.guards.wire import GroundRequest, GroundResponse, Health, ImageInfo

from .async_ import AsyncClient
from .base import DEFAULT_URL, GroundItem, RetryPolicy
from .errors import (
    BadRequest,
    BoxguardError,
    ConnectionFailed,
    ImageNotFound,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    Timeout,
    Unauthorized,
)
from .results import GroundResult
from .sync import Client

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "BadRequest",
    "BoxguardError",
    "CheckResult",
    "Client",
    "ConnectionFailed",
    "Detection",
    "GroundItem",
    "GroundRequest",
    "GroundResponse",
    "GroundResult",
    "Health",
    "ImageInfo",
    "ImageNotFound",
    "InvalidRequest",
    "Overloaded",
    "PayloadTooLarge",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Timeout",
    "Unauthorized",
]
