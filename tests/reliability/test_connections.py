"""Connection limits of the server itself (server/connections.py), with real slow sockets on
loopback: a header deadline, the keep-alive idle limit, a cap on open connections, TCP_NODELAY
on accepted sockets, and credentials scrubbed from the access log."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from boxguard.server.serve import listen_socket, uvicorn_config
from boxguard.server.settings import Settings

LIMITS = Settings(header_timeout_s=0.5, keep_alive_timeout_s=0.5, max_connections=4)
BODY = b"x" * 100


async def two_part_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with headers and body written separately."""
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    await send({"type": "http.response.body", "body": BODY})


@contextmanager
def served(settings: Settings = LIMITS) -> Iterator[tuple[int, uvicorn.Server]]:
    """The two-part app behind boxguard's uvicorn config; yields its port and server."""
    sock = listen_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn_config(two_part_app, settings, log_level="info", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes `sock` (reads and drops anything it sends)."""
    started = time.monotonic()
    while True:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except ConnectionResetError:
            return time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /heal", b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST / HTTP/1.1\r\nContent-Le"],
    ids=["idle", "half-request-line", "unfinished-headers", "half-header"],
)
def test_a_request_head_that_does_not_arrive_is_closed(sent: bytes) -> None:
    with served() as (port, _), connect(port) as sock:
        sock.sendall(sent)
        assert 0.3 < closed_after(sock) < 2.0


def test_a_trickled_request_head_is_bounded_in_total() -> None:
    with served() as (port, _), connect(port) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):  # one byte every 0.1 s never completes the head
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
                if time.monotonic() - started > 3:
                    break
        assert time.monotonic() - started < 2.0


def test_idle_keep_alive_and_a_stalled_second_request_are_closed() -> None:
    with served() as (port, _):
        for second in (b"", b"GET / HTTP/1.1\r\nHo"):
            with connect(port) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                response = b""
                while not response.endswith(BODY):
                    response += sock.recv(65536)
                assert response.startswith(b"HTTP/1.1 200")
                sock.sendall(second)
                assert 0.3 < closed_after(sock) < 2.0


def test_connections_over_the_limit_are_answered_503_at_once() -> None:
    with served() as (port, _):
        held = [connect(port) for _ in range(LIMITS.max_connections)]
        try:
            time.sleep(0.1)  # let the server accept them
            with connect(port) as extra:
                started = time.monotonic()
                extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := extra.recv(65536):
                    answer += chunk
                assert time.monotonic() - started < 0.5
        finally:
            for sock in held:
                sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert b"content-type: application/problem+json" in head
        assert b"retry-after: 1" in head
        problem = json.loads(body)
        assert problem["code"] == "too_many_connections" and problem["status"] == 503
        assert problem["request_id"].encode() in head
        # Once the held connections are gone, new ones are served again.
        time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()


def test_accepted_sockets_have_tcp_nodelay() -> None:
    with served() as (port, server), connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
        (protocol,) = server.server_state.connections
        accepted = protocol.transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_keep_alive_requests_answered_in_two_writes_are_not_delayed() -> None:
    # Without TCP_NODELAY the body waits for the client's delayed ACK of the headers (40 ms).
    with served(Settings()) as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            conn.request("GET", "/")
            assert conn.getresponse().read() == BODY
            times.append(time.perf_counter() - started)
        conn.close()
        assert max(times) < 0.02, times


def test_credentials_in_the_query_string_are_scrubbed_from_the_access_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with served() as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/ground?api_key=s3cret1&x=1&key=s3cret2&token=s3cret3&Key=s3cret4")
        conn.getresponse().read()
        conn.close()
        time.sleep(0.05)
    lines = capsys.readouterr().out.splitlines()  # uvicorn's access log goes to stdout
    assert any("api_key=***&x=1&key=***&token=***&Key=***" in line for line in lines), lines
    assert not any("s3cret" in line for line in lines)


def test_freed_memory_is_returned_once_the_server_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    from boxguard.server import connections

    trims: list[int] = []

    class FakeLibc:
        def malloc_trim(self, pad: int) -> int:
            trims.append(pad)
            return 1

    monkeypatch.setattr(connections, "_LIBC", FakeLibc())
    monkeypatch.setattr(connections, "TRIM_AFTER_IDLE_S", 0.5)
    monkeypatch.setattr(connections.GuardedH11Protocol, "trim_scheduled", False)
    with served() as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(5):
            conn.request("GET", "/")
            conn.getresponse().read()
        assert trims == []  # not while requests keep coming
        time.sleep(1.2)
        conn.close()
    assert trims == [0]  # one trim for the idle spell, not one per response
