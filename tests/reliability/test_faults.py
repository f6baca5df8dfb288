"""Faults against the real backend (wrapped by FaultyBackend) on a real server on loopback.

Backend errors mid-request, hung generations, engine death, client disconnects, stalled and
trickled uploads, SIGTERM while requests are in flight; and no leak of slots, threads or memory.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from faulty_backend import FaultyBackend
from rel_support import assert_clean_text, assert_problem
from support import b64, png_bytes, serve_in_thread

REQUEST_TIMEOUT_S = 12.0  # generous: the first request after a restart compiles grammars
RETRY_AFTER_S = 2
UPLOAD_TIMEOUT_S = 1.0


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0, every_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


@pytest.fixture(scope="module")
def faulty_server(tiny_checkpoint: Path) -> Iterator[tuple[str, FaultyBackend]]:
    """A live server whose backend is the real TransformersBackend behind FaultyBackend."""
    from boxguard.server.app import create_app
    from boxguard.server.backends.transformers_backend import TransformersBackend
    from boxguard.server.models import adapter_for
    from boxguard.server.settings import Settings

    settings = Settings(
        model=str(tiny_checkpoint),
        min_pixels=28 * 28 * 4,
        max_pixels=28 * 28 * 16,
        max_new_tokens=8,
        request_timeout_s=REQUEST_TIMEOUT_S,
        retry_after_s=RETRY_AFTER_S,
        upload_timeout_s=UPLOAD_TIMEOUT_S,
        backend_check_interval_s=0.2,
        max_body_bytes=1024 * 1024,
    )
    adapter = adapter_for(
        str(tiny_checkpoint), min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
    )
    backend = FaultyBackend(TransformersBackend(settings, str(tiny_checkpoint), adapter))
    with serve_in_thread(create_app(settings, backend=backend)) as url:
        yield url, backend


@pytest.fixture()
def server(faulty_server: tuple[str, FaultyBackend]) -> Iterator[tuple[str, FaultyBackend]]:
    url, backend = faulty_server
    backend.reset()
    assert wait_for(lambda: backend.ready and backend.idle, 60)
    yield url, backend
    backend.reset()


BODY = {"image": b64(png_bytes((64, 48))), "expression": "the red circle"}


def ok(url: str) -> httpx.Response:
    r = httpx.post(url + "/ground", json=BODY, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_backend_error_mid_request_is_a_503_with_retry_after(
    server: tuple[str, FaultyBackend],
) -> None:
    url, backend = server
    backend.fail_next(1)
    r = httpx.post(url + "/ground", json=BODY, timeout=60)
    assert_problem(r, 503, "backend_unavailable")
    assert r.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "Injected" not in r.text and "injected" not in r.text
    assert backend.idle and backend.ready
    ok(url)


def test_hung_generation_hits_the_deadline_and_frees_the_slot(
    server: tuple[str, FaultyBackend],
) -> None:
    url, backend = server
    backend.hang = True
    before = metric("boxguard_cancelled_generations_total", {"cause": "deadline"})
    started = time.monotonic()
    r = httpx.post(url + "/ground", json=BODY, timeout=60)
    elapsed = time.monotonic() - started
    assert_problem(r, 504, "generation_timeout")
    assert REQUEST_TIMEOUT_S - 0.5 <= elapsed < REQUEST_TIMEOUT_S + 10, elapsed
    assert metric("boxguard_cancelled_generations_total", {"cause": "deadline"}) == before + 1
    # The deadline's cancellation reached the worker thread: the hung decode let go.
    assert backend.hangs_released.wait(5)
    backend.hang = False
    assert wait_for(lambda: backend.idle, 10)
    assert backend.queue_depth == 0
    ok(url)


def _raw_post(
    url: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    content_length: int | None = None,
) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    length = len(body) if content_length is None else content_length
    head = (
        f"POST /ground HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def _read_response(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    is_length = line.lower().startswith(b"content-length:")
                    if is_length and len(rest) >= int(line.split(b":")[1]):
                        return data
    except TimeoutError:
        pass
    return data


def test_client_disconnect_cancels_the_generation(server: tuple[str, FaultyBackend]) -> None:
    url, backend = server
    backend.hang = True
    labels = {"cause": "client_disconnect"}
    before = metric("boxguard_cancelled_generations_total", labels)
    import json

    sock = _raw_post(url, json.dumps(BODY).encode())
    assert backend.hangs_entered.wait(30), "the generation never started"
    sock.close()  # the client goes away while its generation runs
    assert wait_for(lambda: metric("boxguard_cancelled_generations_total", labels) == before + 1, 5)
    assert backend.hangs_released.wait(5), "the worker kept generating for a gone client"
    backend.hang = False
    assert wait_for(lambda: backend.idle, 10)
    ok(url)


def test_client_disconnect_with_httpx_timeout(server: tuple[str, FaultyBackend]) -> None:
    url, backend = server
    backend.hang = True
    labels = {"cause": "client_disconnect"}
    before = metric("boxguard_cancelled_generations_total", labels)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/ground", json=BODY, timeout=httpx.Timeout(10, read=1.0))
    assert wait_for(lambda: metric("boxguard_cancelled_generations_total", labels) == before + 1, 5)
    backend.hang = False
    assert wait_for(lambda: backend.idle, 10)
    ok(url)


def _stalled_upload(url: str, content_type: str, body: bytes) -> bytes:
    sock = _raw_post(
        url, body[: len(body) // 2], content_type=content_type, content_length=len(body)
    )
    try:
        started = time.monotonic()
        answer = _read_response(sock, UPLOAD_TIMEOUT_S + 10)
        assert time.monotonic() - started < UPLOAD_TIMEOUT_S + 10
        return answer
    finally:
        sock.close()


def _status_and_body(raw: bytes) -> tuple[int | None, bytes]:
    if not raw:
        return None, b""  # the connection was closed: acceptable for a stalled upload
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_stalled_json_upload_times_out(server: tuple[str, FaultyBackend]) -> None:
    import json

    url, backend = server
    raw = _stalled_upload(url, "application/json", json.dumps(BODY).encode())
    status, body = _status_and_body(raw)
    assert status in (408, None), (status, body)
    if status == 408:
        assert b'"upload_timeout"' in body and b"application/problem+json" in raw
    assert backend.idle
    ok(url)


def _multipart(image: bytes) -> tuple[str, bytes]:
    boundary = "bgboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="expression"\r\n\r\n'
            f'the red circle\r\n--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def test_stalled_multipart_upload_times_out(server: tuple[str, FaultyBackend]) -> None:
    url, _ = server
    ctype, body = _multipart(png_bytes((256, 256)))
    status, answer = _status_and_body(_stalled_upload(url, ctype, body))
    assert status in (408, None), (status, answer)
    if status is not None:
        assert b'"upload_timeout"' in answer


def test_chunked_oversized_multipart_is_a_413(server: tuple[str, FaultyBackend]) -> None:
    url, _ = server
    ctype, body = _multipart(os.urandom(2 * 1024 * 1024))

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = httpx.post(url + "/ground", content=chunks(), headers={"content-type": ctype}, timeout=60)
    assert_problem(r, 413, "payload_too_large")


def test_chunked_oversized_json_is_a_413(server: tuple[str, FaultyBackend]) -> None:
    url, _ = server

    def chunks() -> Iterator[bytes]:
        yield b'{"expression": "x", "image": "'
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'

    r = httpx.post(
        url + "/ground",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_problem(r, 413, "payload_too_large")


@pytest.mark.slow
def test_trickled_upload_is_bounded_in_total(server: tuple[str, FaultyBackend]) -> None:
    import json

    url, _ = server
    body = json.dumps(BODY).encode()
    sock = _raw_post(url, b"", content_length=len(body))
    started = time.monotonic()
    answered = b""
    try:
        sock.settimeout(0.01)
        for i in range(len(body)):
            if time.monotonic() - started > 8 * UPLOAD_TIMEOUT_S:
                break
            try:
                sock.sendall(body[i : i + 1])
            except OSError:
                break
            try:
                answered = sock.recv(65536)
            except TimeoutError:
                answered = b""
            except OSError:
                break
            if answered:
                break
            time.sleep(UPLOAD_TIMEOUT_S * 0.6)
        else:
            pytest.fail("the whole body trickled through")
    finally:
        sock.close()
    # Expected: the server ended the upload (408 or a close) within a total deadline.
    assert answered.startswith(b"HTTP/1.1 408"), answered[:200]


def test_dead_backend_fails_readyz_and_is_restarted(server: tuple[str, FaultyBackend]) -> None:
    url, backend = server
    restarts = metric("boxguard_backend_restarts_total")
    starts = backend.starts
    backend.kill()
    r = httpx.get(url + "/readyz", timeout=10)
    assert r.status_code == 503 and r.json()["status"] == "not_ready", r.text
    dead = httpx.post(url + "/ground", json=BODY, timeout=30)
    assert_problem(dead, 503, "backend_unavailable")
    backend.allow_restart()
    assert wait_for(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200, 120, 0.1)
    assert metric("boxguard_backend_restarts_total") == restarts + 1, (restarts, backend.starts)
    assert backend.starts == starts + 1, (starts, backend.starts)
    ok(url)


def test_unexpected_backend_exception_is_a_clean_500(
    server: tuple[str, FaultyBackend], caplog: pytest.LogCaptureFixture
) -> None:
    url, backend = server
    backend.unexpected_error = True
    r = httpx.post(
        url + "/ground", json=BODY, headers={"x-request-id": "rid-500-check"}, timeout=30
    )
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "internal_error" and body["request_id"] == "rid-500-check"
    assert_clean_text(r.text, ("secret",))
    assert any("rid-500-check" in rec.getMessage() for rec in caplog.records)


def test_backend_failure_log_carries_the_request_id(
    server: tuple[str, FaultyBackend], caplog: pytest.LogCaptureFixture
) -> None:
    url, backend = server
    backend.fail_next(1)
    r = httpx.post(url + "/ground", json=BODY, headers={"x-request-id": "rid-503-log"}, timeout=60)
    assert_problem(r, 503, "backend_unavailable")
    assert any("rid-503-log" in rec.getMessage() for rec in caplog.records)


# The event loop's default executor (asyncio.to_thread) adds a worker whenever calls overlap, up
# to this bound and never past it: a loaded machine reaches one more than the warm-up did.
DEFAULT_EXECUTOR_MAX = min(32, (os.cpu_count() or 1) + 4)


def _executor_threads() -> int:
    return sum(t.name.startswith("asyncio_") for t in threading.enumerate())


def _other_threads() -> int:
    return sum(not t.name.startswith("asyncio_") for t in threading.enumerate())


def _thread_count_settles(baseline: int, timeout_s: float = 15) -> int:
    """Threads outside the default executor once they are back to `baseline` (or the timeout)."""
    wait_for(lambda: _other_threads() <= baseline, timeout_s, 0.1)
    return _other_threads()


def test_faulted_requests_leak_no_slot_thread_or_memory(
    server: tuple[str, FaultyBackend],
) -> None:
    import json

    psutil = pytest.importorskip("psutil")
    url, backend = server
    proc = psutil.Process()

    def one_round(client: httpx.Client, i: int) -> None:
        kind = i % 5
        if kind in (0, 1):  # error raised in the worker before the model ran
            backend.fail_next(1, before_model=True)
            assert client.post(url + "/ground", json=BODY).status_code == 503
        elif kind == 2:  # error after the model ran
            backend.fail_next(1)
            assert client.post(url + "/ground", json=BODY).status_code == 503
        elif kind == 3:  # client disconnect during a hung generation
            backend.hang = True
            backend.hangs_entered.clear()
            backend.hangs_released.clear()
            sock = _raw_post(url, json.dumps(BODY).encode())
            assert backend.hangs_entered.wait(30)
            sock.close()
            assert backend.hangs_released.wait(10)
            backend.hang = False
        else:  # stalled upload
            raw = _stalled_upload(url, "application/json", json.dumps(BODY).encode())
            status, _ = _status_and_body(raw)
            assert status in (408, None)
        assert wait_for(lambda: backend.idle, 10)

    with httpx.Client(timeout=60) as client:
        for i in range(10):  # warm-up: thread pools and caches reach their steady size
            one_round(client, i)
        gc.collect()
        threads = _other_threads()
        rss = proc.memory_info().rss
        tracemalloc.start()
        snap = tracemalloc.take_snapshot()
        for i in range(50):
            one_round(client, i)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(snap, "filename"))
    assert growth < 2 * 1024 * 1024, f"python heap grew {growth} bytes over 50 faulted requests"
    assert proc.memory_info().rss - rss < 64 * 1024 * 1024
    assert _thread_count_settles(threads) <= threads
    assert _executor_threads() <= DEFAULT_EXECUTOR_MAX
    assert backend.idle and backend.queue_depth == 0
    assert metric("boxguard_requests_in_flight") == 0
    ok(url)


# --- SIGTERM drains in-flight requests -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sigterm_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`boxguard serve` as a subprocess; 4 requests in flight; SIGTERM; collect the outcome."""
    port = _free_port()
    env = {
        **os.environ,
        "BOXGUARD_MODEL": str(tiny_checkpoint),
        "BOXGUARD_PORT": str(port),
        "BOXGUARD_MAX_NEW_TOKENS": "48",
        "BOXGUARD_MAX_BATCH_SIZE": "1",
        "BOXGUARD_REQUEST_TIMEOUT_S": "120",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = tmp_path_factory.mktemp("sigterm") / "serve.log"
    cmd = [sys.executable, "-c", "from boxguard.cli.commands import main; main()", "serve"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _ready(url), 240, 0.2), log.read_text()[-2000:]
        body = {"image": b64(png_bytes((320, 240))), "expression": "the red circle"}

        async def burst() -> list[Any]:
            async with httpx.AsyncClient(timeout=180) as client:
                tasks = [
                    asyncio.create_task(client.post(url + "/ground", json=body)) for _ in range(4)
                ]
                # SIGTERM once the server holds all four requests.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    text = (await client.get(url + "/metrics")).text
                    if "boxguard_requests_in_flight 4.0" in text:
                        break
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks, return_exceptions=True)

        responses = asyncio.run(burst())
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"responses": responses, "exit_code": code, "log": log.read_text()}


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(sigterm_run: dict[str, Any]) -> None:
    statuses = [getattr(r, "status_code", repr(r)) for r in sigterm_run["responses"]]
    assert statuses == [200, 200, 200, 200], (statuses, sigterm_run["log"][-2000:])
    assert sigterm_run["exit_code"] in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_exit_code_is_zero(sigterm_run: dict[str, Any]) -> None:
    assert sigterm_run["exit_code"] == 0
