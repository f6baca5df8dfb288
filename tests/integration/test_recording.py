"""`--record`: a real server writes each /ground to the store, serves the review API, counts
what it could not write; a SIGKILLed server leaves a store the next server opens and appends to."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from boxguard.records import RecordStore
from support import b64, png_bytes, serve_in_thread


def _wait_for(predicate: object, timeout_s: float = 30.0) -> None:
    """Poll until `predicate()` is true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _metric(url: str, name: str) -> float:
    """One sample's value from /metrics (0 when absent)."""
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def recording_server(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Any]]:
    """A server recording into a fresh directory; yields (URL, store directory, app)."""
    from boxguard.server.app import create_app
    from boxguard.server.settings import Settings

    store = tmp_path_factory.mktemp("records")
    settings = Settings(model=str(tiny_checkpoint), max_new_tokens=40, record=str(store))
    app = create_app(settings)
    with serve_in_thread(app) as url:
        yield url, store, app


def test_each_ground_is_recorded_once_without_keys_or_headers(
    recording_server: tuple[str, Path, Any],
) -> None:
    url, store_dir, _ = recording_server
    written = _metric(url, "boxguard_records_written_total")
    image = png_bytes((200, 150), "red")
    headers = {"Authorization": "Bearer sk-secret-token", "X-Request-ID": "rec-1"}
    body = {"image": b64(image), "expression": "the red square", "policy": {"min_confidence": 0}}
    for _ in range(2):
        assert (
            httpx.post(url + "/ground", json=body, headers=headers, timeout=60).status_code == 200
        )
    _wait_for(lambda: _metric(url, "boxguard_records_written_total") >= written + 2)
    store = RecordStore.open(str(store_dir))
    records = [r for r in store.all() if r.request_id == "rec-1"]
    assert len(records) == 2
    first = records[0]
    assert first.expression == "the red square" and first.options["policy"] == {"min_confidence": 0}
    assert (first.image_width, first.image_height, first.image_ext) == (200, 150, "png")
    assert store.image(first) == image  # stored as sent, once
    assert len(list((store_dir / "records.images").glob("*/*"))) == len(
        {r.image_sha256 for r in store.all()}
    )
    assert first.status in ("accepted", "abstained") and first.raw_output
    assert {"decode", "generate", "verify"} <= set(first.timings)
    dump = (store_dir / "records.db").read_bytes() + (store_dir / "records.db-wal").read_bytes()
    assert b"sk-secret-token" not in dump and b"Bearer" not in dump
    store.close()


def test_review_api_lists_and_stores_decisions(recording_server: tuple[str, Path, Any]) -> None:
    url, _, _ = recording_server
    body = {"image": b64(png_bytes((120, 90), "blue")), "expression": "the blue thing"}
    request_id = httpx.post(url + "/ground", json=body, timeout=60).json()["id"]
    _wait_for(
        lambda: any(
            r["request_id"] == request_id
            for r in httpx.get(url + "/v1/records", timeout=10).json()["records"]
        )
    )
    record = next(
        r
        for r in httpx.get(url + "/v1/records", timeout=10).json()["records"]
        if r["request_id"] == request_id
    )
    image = httpx.get(f"{url}/v1/records/{record['id']}/image", timeout=10)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    bad = httpx.post(
        f"{url}/v1/records/{record['id']}/review",
        json={"decision": "box", "boxes": [[10, 10, 500, 20]]},
        timeout=10,
    )
    assert bad.status_code == 422
    done = httpx.post(
        f"{url}/v1/records/{record['id']}/review",
        json={"decision": "box", "boxes": [[10, 20, 60, 70]]},
        timeout=10,
    )
    assert done.status_code == 200, done.text
    assert done.json()["review"] == {"decision": "box", "boxes": [[10, 20, 60, 70]]}
    reviewed = httpx.get(url + "/v1/records", params={"reviewed": "true"}, timeout=10).json()
    assert [r["id"] for r in reviewed["records"]] == [record["id"]]
    assert httpx.get(url + "/v1/records/999999", timeout=10).status_code == 404


def test_a_store_that_fails_never_fails_a_request(
    recording_server: tuple[str, Path, Any],
) -> None:
    url, _, app = recording_server
    errors = _metric(url, "boxguard_record_errors_total")
    store = app.state.recorder.store

    def down(*args: object) -> int:
        raise OSError("the disk is full")

    store.add = down
    try:
        body = {"image": b64(png_bytes((64, 64), "green")), "expression": "x"}
        assert httpx.post(url + "/ground", json=body, timeout=60).status_code == 200
        _wait_for(lambda: _metric(url, "boxguard_record_errors_total") > errors)
    finally:
        del store.add


def test_recording_off_answers_404(live_server: str) -> None:
    answer = httpx.get(live_server + "/v1/records", timeout=10)
    assert answer.status_code == 404 and "--record" in answer.json()["detail"]


def _serve(checkpoint: Path, store: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`boxguard serve --record` as a user runs it, once /readyz answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXGUARD_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "boxguard.cli",
            "serve",
            "--model",
            str(checkpoint),
            "--port",
            str(port),
            "--record",
            f"sqlite://{store}/records.db",
            "--max-new-tokens",
            "24",
            "--no-visual-check",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"serve did not become ready: {log.read_text()[-2000:]}")
        time.sleep(0.25)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(600)
def test_sigkill_during_writes_leaves_a_store_the_next_server_appends_to(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _serve(tiny_checkpoint, tmp_path, port, log)
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()

    def client(seed: int) -> None:
        """Distinct images (so image files are being written) until the server dies."""
        n = 0
        while not stop.is_set():
            n += 1
            body = {
                "image": b64(png_bytes((96 + n % 50, 80), (seed * 40, n % 255, 9))),
                "expression": f"thing {n}",
            }
            try:
                httpx.post(url + "/ground", json=body, timeout=30)
            except httpx.HTTPError:
                return

    clients = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for thread in clients:
        thread.start()
    db = tmp_path / "records.db"
    _wait_for(lambda: _metric(url, "boxguard_records_written_total") >= 6, timeout_s=180)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stop.set()
    for thread in clients:
        thread.join(timeout=60)
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    store = RecordStore.open(str(db))
    before = store.all()
    assert len(before) >= 6
    assert all(store.image(r) is not None for r in before)  # no row without its image
    assert not list((tmp_path / "records.images").glob("*/.tmp-*"))  # swept on open
    store.close()
    proc = _serve(tiny_checkpoint, tmp_path, port, log)
    try:
        body = {"image": b64(png_bytes((70, 70), "white")), "expression": "after the crash"}
        assert httpx.post(url + "/ground", json=body, timeout=60).status_code == 200
        _wait_for(lambda: _metric(url, "boxguard_records_written_total") >= 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    store = RecordStore.open(str(db))
    after = store.all()
    assert len(after) == len(before) + 1 and after[-1].expression == "after the crash"
    assert after[-1].id is not None and after[-1].id > max(r.id or 0 for r in before)
    store.close()
