"""Problem+json answers: one handler maps every error to RFC 9457 with a stable code."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import (
    BoxguardServerError,
    PayloadTooLarge,
    UploadTimeout,
    ValidationFailed,
    validation_errors,
)
from .schema import Problem

log = logging.getLogger("boxguard.server")

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    # FastAPI's own 400 is a body its routes could not parse (e.g. not JSON, not UTF-8).
    400: "malformed_json",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    request: Request | None = None,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    """A problem+json response carrying the request id."""
    if request is not None:
        request_id = getattr(request.state, "request_id", None)
    body = Problem(
        title=title, status=status, detail=detail, code=code, request_id=request_id, errors=errors
    )
    all_headers = dict(headers or {})
    if request_id:
        all_headers["X-Request-ID"] = request_id
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=all_headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Map boxguard errors, validation errors, HTTP errors and crashes to problem+json."""

    @app.exception_handler(BoxguardServerError)
    async def _boxguard(request: Request, exc: BoxguardServerError) -> JSONResponse:
        errors = exc.errors if isinstance(exc, ValidationFailed) else None
        return problem_response(
            exc.status_code,
            exc.code,
            exc.title,
            exc.detail,
            request,
            headers=exc.headers,
            errors=errors or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        return problem_response(
            422,
            "validation_error",
            "The request does not match the schema",
            "; ".join(error["msg"] for error in errors) or "see errors",
            request,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return problem_response(
            exc.status_code,
            code,
            str(exc.detail),
            str(exc.detail),
            request,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error (request_id=%s)", getattr(request.state, "request_id", None))
        return problem_response(
            500, "internal_error", "Internal server error", "an unexpected error occurred", request
        )


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` (by Content-Length at once, else while reading) and
    bodies that do not arrive in full within `chunk_timeout_s`."""

    def __init__(self, app: ASGIApp, max_bytes: int, chunk_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.chunk_timeout_s = chunk_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = problem_response(
                    413,
                    PayloadTooLarge.code,
                    PayloadTooLarge.title,
                    f"the body is {int(value)} bytes; the limit is {self.max_bytes}",
                    request_id=scope.get("state", {}).get("request_id"),
                )
                await response(scope, receive, send)
                return
        received = 0
        body_done = False
        deadline = asyncio.get_running_loop().time() + self.chunk_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                # After the body, receive() waits for a disconnect: no deadline there.
                return await receive()
            # One deadline for the whole body: a trickle of bytes cannot hold a slot forever.
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except asyncio.TimeoutError:
                raise UploadTimeout(
                    f"the body did not arrive within {self.chunk_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"the body is over the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)
