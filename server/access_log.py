"""Every answered POST /ground counted and logged once, whichever layer answered it.

The API key check (401) and the Content-Length body limit (413) answer before the route runs,
so the count and the log line live in a middleware outside them; the route leaves its outcome
and reasons on the request state, and an answer without them is named by its status.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import get_metrics

log = logging.getLogger("boxguard.server")

# Outcomes of answers the route never saw (its own carry the problem's code).
_STATUS_OUTCOMES = {401: "unauthorized", 413: "payload_too_large", 500: "internal_error"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The root handler: text lines, or one JSON object a line for log_format json."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def log_ground(fields: dict[str, Any]) -> None:
    """The one line of a /ground request: key=value text, and `fields` for the JSON formatter."""
    text = " ".join(
        f"{key}={','.join(value) if isinstance(value, list) else value}"
        for key, value in fields.items()
    )
    log.info("ground %s", text, extra={"fields": fields})


class GroundAccountingMiddleware:
    """Counts boxguard_requests_total{outcome} and logs one line for every POST /ground."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = get_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/ground" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            state = scope.get("state", {})
            outcome = state.get("outcome") or _STATUS_OUTCOMES.get(status, f"http_{status}")
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(outcome).inc()
            self.metrics.stage_seconds.labels("total").observe(seconds)
            backend = getattr(scope["app"].state, "backend", None) if "app" in scope else None
            log_ground(
                {
                    "id": state.get("request_id"),
                    "status": status,
                    "outcome": outcome,
                    "reasons": state.get("reasons", []),
                    "latency_ms": round(seconds * 1000, 1),
                    "backend": backend.name if backend is not None else None,
                }
            )
