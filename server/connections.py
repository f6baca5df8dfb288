"""uvicorn's h11 protocol with the connection limits it lacks.

uvicorn bounds the idle time between requests (`timeout_keep_alive`) but not the time a client
may take to send a request line and headers, and it accepts any number of connections: a few
hundred slowloris clients hold the server. This protocol adds a header deadline, a cap on open
connections (answered 503 at once) and TCP_NODELAY on every accepted socket.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import re
import socket
import uuid
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import TooManyConnections
from .schema import Problem
from .settings import Settings

log = logging.getLogger("boxguard.server")

# Hand freed heap back to the OS once no request has been in flight for this long.
TRIM_AFTER_IDLE_S = 1.0

# Query parameters that carry credentials: their values never reach the access log.
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api_key|apikey|key|token|access_token)=)[^&#\s]*")


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a header deadline, a connection cap and TCP_NODELAY."""

    header_timeout_s: ClassVar[float] = 10.0
    keep_alive_timeout_s: ClassVar[float] = 5.0
    max_connections: ClassVar[int] = 1024
    retry_after_s: ClassVar[int] = 1
    trim_scheduled: ClassVar[bool] = False  # one idle trim pending for the whole server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's Config types this as int; the protocol only hands it to call_later.
        self.timeout_keep_alive = self.keep_alive_timeout_s  # type: ignore[assignment]
        self._header_deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set TCP_NODELAY, refuse connections over the cap, start the header deadline."""
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        # asyncio sets TCP_NODELAY only on sockets made with proto=IPPROTO_TCP; without it a
        # response written as headers then body waits for the peer's delayed ACK (40 ms).
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d open", len(self.connections) - 1)
            # Answer, then half-close and drop what the client sends until it closes (or the
            # header deadline): closing at once would reset the request and lose the answer.
            self._refused = True
            transport.write(_too_many_connections(self.retry_after_s))
            transport.write_eof()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        """Arm the header deadline while a request's head is incomplete, disarm it after."""
        if self._refused:
            return
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(
                    self.header_timeout_s, self._headers_late
                )
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        """Once the server has been idle a moment, return freed memory to the OS."""
        super().on_response_complete()
        if _LIBC is not None and not GuardedH11Protocol.trim_scheduled:
            GuardedH11Protocol.trim_scheduled = True
            self.loop.call_later(TRIM_AFTER_IDLE_S, self._trim_when_idle)

    def _trim_when_idle(self) -> None:
        """malloc_trim if no request is in flight, else look again later."""
        if self.tasks:
            self.loop.call_later(TRIM_AFTER_IDLE_S, self._trim_when_idle)
            return
        GuardedH11Protocol.trim_scheduled = False
        # glibc keeps freed image buffers in its arenas: a burst of 25 MP images would
        # otherwise hold its peak RSS for good. Off the loop: a big heap takes ms to trim.
        if _LIBC is not None:
            self.loop.run_in_executor(None, _LIBC.malloc_trim, 0)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        """Cancel the header deadline if it is armed."""
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        """Close a connection whose request head did not arrive in time."""
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def _load_glibc() -> ctypes.CDLL | None:
    """glibc, for malloc_trim; None on other C libraries (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_glibc()


def _too_many_connections(retry_after_s: int) -> bytes:
    """A complete 503 problem+json response that closes the connection."""
    request_id = uuid.uuid4().hex
    body = (
        Problem(
            title=TooManyConnections.title,
            status=TooManyConnections.status_code,
            detail="the server has too many open connections; retry later",
            code=TooManyConnections.code,
            request_id=request_id,
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\n"
        f"content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {retry_after_s}\r\n"
        f"x-request-id: {request_id}\r\n"
        f"connection: close\r\n\r\n"
    )
    return head.encode() + body


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class with the limits of `settings`."""

    class Configured(GuardedH11Protocol):
        header_timeout_s = settings.header_timeout_s
        keep_alive_timeout_s = settings.keep_alive_timeout_s
        max_connections = settings.max_connections
        retry_after_s = settings.retry_after_s

    return Configured


class ScrubSecrets(logging.Filter):
    """Replace credential values in the query strings of uvicorn's access log with ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument; always keep the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


SCRUB_SECRETS = ScrubSecrets()
