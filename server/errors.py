"""The server's exception tree; each maps to one problem+json answer with a stable code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from boxguard.guards import GuardFault
from boxguard.guards.wire_errors import readable_errors

from .backends.base import BackendError, QueueFull, UpstreamInvalid


def validation_errors(
    errors: Iterable[Mapping[str, Any]], *, within: str | None = None
) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as {loc, msg, type}: msg phrased for people, never the input."""
    return readable_errors(errors, within=within)


class BoxguardServerError(Exception):
    """Base of errors the server answers with a problem detail."""

    status_code = 500
    code = "internal_error"
    title = "Internal server error"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}


class BadRequest(BoxguardServerError):
    status_code = 400
    code = "bad_request"
    title = "Bad request"


class MalformedJSON(BadRequest):
    code = "malformed_json"
    title = "The body is not valid JSON"


class InvalidImage(BadRequest):
    code = "invalid_image"
    title = "The image could not be decoded"


class MissingImage(BadRequest):
    code = "missing_image"
    title = "No image was sent"


class InvalidBase64(BadRequest):
    code = "invalid_base64"
    title = "The image is not valid base64"


class ImageTooSmall(BadRequest):
    code = "image_too_small"
    title = "The image is too small to ground in"


class AspectRatioTooLarge(BadRequest):
    code = "aspect_ratio_too_large"
    title = "The image's aspect ratio is over the limit"


class ImageTooLarge(BadRequest):
    status_code = 413
    code = "image_too_many_pixels"
    title = "The image declares more pixels than allowed"


class PayloadTooLarge(BoxguardServerError):
    status_code = 413
    code = "payload_too_large"
    title = "The request body is over the size limit"


class ValidationFailed(BoxguardServerError):
    status_code = 422
    code = "validation_error"
    title = "The request does not match the schema"

    def __init__(self, detail: str, errors: list[dict] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class InvalidPolicy(ValidationFailed):
    code = "invalid_policy"
    title = "The policy override is invalid or out of the allowed bounds"


class ImageUrlDisabled(BadRequest):
    status_code = 403
    code = "image_url_disabled"
    title = "Fetching images by URL is disabled on this server"


class ImageUrlRefused(BadRequest):
    status_code = 403
    code = "image_url_refused"
    title = "The image URL is not allowed"


class ImageFetchFailed(BadRequest):
    status_code = 422
    code = "image_fetch_failed"
    title = "The image URL could not be fetched"


class UnsupportedMediaType(BoxguardServerError):
    status_code = 415
    code = "unsupported_media_type"
    title = "Send application/json or multipart/form-data"


class Unauthorized(BoxguardServerError):
    status_code = 401
    code = "unauthorized"
    title = "A valid API key is required"


class Overloaded(BoxguardServerError):
    status_code = 429
    code = "overloaded"
    title = "The request queue is full"


class BackendUnavailable(BoxguardServerError):
    status_code = 503
    code = "backend_unavailable"
    title = "The model backend is not available"


class UpstreamError(BoxguardServerError):
    status_code = 502
    code = "upstream_error"
    title = "The upstream model server gave an answer that is not a chat completion"


class TooManyConnections(BoxguardServerError):
    status_code = 503
    code = "too_many_connections"
    title = "The server has too many open connections"


class CheckUnavailable(BoxguardServerError):
    status_code = 503
    code = "check_unavailable"
    title = "A dependency of a guard check failed"


class GenerationTimeout(BoxguardServerError):
    status_code = 504
    code = "generation_timeout"
    title = "The model did not answer within the request deadline"


class UploadTimeout(BoxguardServerError):
    status_code = 408
    code = "upload_timeout"
    title = "The request body did not arrive in time"


class ClientDisconnected(BoxguardServerError):
    status_code = 499
    code = "client_disconnected"
    title = "The client closed the connection"


# Faults of the backend or of a check's dependency, and the problem each is for the client, most
# specific first (as httpx maps transport errors in one table). Never an abstention.
FAULT_PROBLEMS: tuple[tuple[type[Exception], type[BoxguardServerError], str], ...] = (
    (QueueFull, Overloaded, "the request queue is full; retry later"),
    (UpstreamInvalid, UpstreamError, "the upstream model server's answer was malformed"),
    (BackendError, BackendUnavailable, "the model backend failed; retry later"),
    (GuardFault, CheckUnavailable, "a check could not run; retry later"),
)


def problem_for_fault(exc: Exception, *, headers: dict[str, str]) -> BoxguardServerError:
    """The problem a fault is for the client (its own text stays in the server's log).

    Example:
        >>> problem_for_fault(QueueFull("64 queued"), headers={}).status_code
        429
    """
    for fault, problem, detail in FAULT_PROBLEMS:
        if isinstance(exc, fault):
            return problem(detail, headers=headers)
    raise TypeError(f"{type(exc).__name__} is not a fault with a problem") from exc
