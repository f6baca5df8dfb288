"""API keys and request ids, as pure ASGI middleware (no body buffering, disconnects visible)."""

from __future__ import annotations

import hmac
import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import Unauthorized
from .playground import ASSET_PREFIX, PAGE_PATHS
from .problems import problem_response

log = logging.getLogger("boxguard.server")

OPEN_PATHS = frozenset({"/healthz", "/readyz", *PAGE_PATHS})


class RequestIdMiddleware:
    """Takes a sane X-Request-ID or makes one; puts it on scope state and the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope.get("headers", [])).get(b"x-request-id", b"")
        text = supplied.decode("latin-1")
        valid = 0 < len(text) <= 128 and text.isprintable() and text.isascii()
        request_id = text if valid else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def _presented_key(scope: Scope) -> str | None:
    """The key from `Authorization: Bearer …` or `X-API-Key`; Unauthorized if either header
    comes more than once (which copy counts differs between proxies and servers)."""
    auth: list[bytes] = []
    api_key: list[bytes] = []
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            auth.append(value)
        elif name == b"x-api-key":
            api_key.append(value)
    if len(auth) > 1 or len(api_key) > 1:
        raise Unauthorized("send one Authorization or X-API-Key header, not several")
    bearer = auth[0].decode("latin-1") if auth else ""
    if bearer[:7].lower() == "bearer ":
        return bearer[7:].strip()
    return api_key[0].decode("latin-1").strip() if api_key else None


def key_matches(presented: str, keys: list[str]) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


class ApiKeyMiddleware:
    """401 problem without a valid key; health and readiness stay open, metrics configurable."""

    def __init__(self, app: ASGIApp, keys: list[str], *, metrics_require_key: bool) -> None:
        self.app = app
        self.keys = keys
        self.metrics_require_key = metrics_require_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # The playground page, its assets and samples hold no data: open, like health checks.
        open_path = (
            path in OPEN_PATHS
            or path.startswith(ASSET_PREFIX)
            or (path == "/metrics" and not self.metrics_require_key)
        )
        if scope["type"] != "http" or not self.keys or open_path or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        detail = "send the API key as `Authorization: Bearer <key>`"
        try:
            presented = _presented_key(scope)
        except Unauthorized as exc:
            presented, detail = None, exc.detail
        if presented is None or not key_matches(presented, self.keys):
            request_id = scope.get("state", {}).get("request_id")
            log.info("unauthorized request (request_id=%s, path=%s)", request_id, path)
            response = problem_response(
                401,
                Unauthorized.code,
                Unauthorized.title,
                detail,
                headers={"WWW-Authenticate": "Bearer"},
                request_id=request_id,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
