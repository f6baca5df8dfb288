"""The record store on SQLite and a real PostgreSQL: schema, dedup, size cap, concurrent writers."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boxguard.records import Record, RecordStore
from boxguard.records.backends import _switch_to_wal


def _record(expression: str = "the cat", status: str = "abstained") -> Record:
    """A record as the server writes it."""
    return Record(
        request_id="r1",
        model="m",
        frame="pixels",
        status=status,
        expression=expression,
        options={"multiple": False},
        raw_output='[{"bbox_2d": [1, 2, 30, 40], "label": "cat"}]',
        verdict={"status": status, "detections": [], "candidates": [], "reasons": ["x"]},
        timings={"generate": 1.0},
        image_sha256="",
        image_ext="png",
        image_width=100,
        image_height=80,
        model_width=112,
        model_height=84,
    )


def _image(n: int, size: int = 1000) -> bytes:
    """`size` distinct bytes standing in for image `n`."""
    return n.to_bytes(4, "big") * (size // 4)


def test_schema_is_versioned_and_reopening_migrates_nothing(tmp_path: Path) -> None:
    store = RecordStore.open(str(tmp_path))
    assert store.schema_version == 1
    store.add(_record(), _image(1))
    store.close()
    again = RecordStore.open(f"sqlite://{tmp_path}/records.db")
    assert again.schema_version == 1 and again.count() == 1
    rows = again.backend.execute("SELECT COUNT(*) FROM schema_version").fetchone()
    assert rows[0] == 1


def test_images_are_stored_once_and_read_back(tmp_path: Path) -> None:
    store = RecordStore.open(str(tmp_path / "records.db"))
    first = store.add(_record("a"), _image(7))
    second = store.add(_record("b"), _image(7))
    files = list((tmp_path / "records.images").glob("*/*"))
    assert len(files) == 1 and files[0].name.endswith(".png")
    a, b = store.get(first), store.get(second)
    assert a is not None and b is not None and a.image_sha256 == b.image_sha256
    assert store.image(a) == _image(7)
    reviewed = store.set_review(first, {"decision": "absent", "boxes": []})
    assert reviewed is not None and reviewed.review == {"decision": "absent", "boxes": []}
    assert [r.id for r in store.find(reviewed=False)] == [second]
    assert [r.id for r in store.find(status="abstained", reviewed=True)] == [first]


def test_the_size_cap_prunes_oldest_first_and_their_images(tmp_path: Path) -> None:
    store = RecordStore.open(str(tmp_path))
    shared = _image(99)
    ids = [store.add(_record(f"e{n}"), _image(n) if n % 2 else shared) for n in range(10)]
    per_record = store.get(ids[0]).size_bytes  # type: ignore[union-attr]
    removed = store.prune(per_record * 4)
    assert removed == 6
    kept = store.all()
    assert [r.id for r in kept] == ids[6:] and store.total_bytes <= per_record * 4
    assert all(store.image(r) is not None for r in kept)
    files = {f.name.split(".")[0] for f in (tmp_path / "records.images").glob("*/*")}
    assert files == {r.image_sha256 for r in kept}  # the shared image survives, others went


def _writers(url: str, writers: int, each: int, max_bytes: int = 0) -> None:
    """`writers` threads, each with its own store connection (as replicas have), writing."""
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            store = RecordStore.open(url)
            for i in range(each):
                store.add(_record(f"w{n}-{i}"), _image(n * 1000 + i % 3))
                if max_bytes and store.total_bytes > max_bytes:
                    store.prune(max_bytes)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_concurrent_writers_on_sqlite(tmp_path: Path) -> None:
    _writers(str(tmp_path), writers=4, each=15)
    store = RecordStore.open(str(tmp_path))
    records = store.all()
    assert len(records) == 60 and len({r.id for r in records}) == 60
    assert all(store.image(r) is not None for r in records)


class _LockedAtFirst(sqlite3.Connection):
    """A real connection whose first `locked` journal-mode switches fail as a racing one's do."""

    locked = 2

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.startswith("PRAGMA journal_mode") and self.locked:
            self.locked -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, *args)


def test_the_wal_switch_retries_while_another_connection_holds_the_lock(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db", factory=_LockedAtFirst)
    _switch_to_wal(conn, deadline=time.monotonic() + 5)
    assert conn.locked == 0
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_wal_switch_gives_up_at_its_deadline_and_on_other_errors(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db", factory=_LockedAtFirst)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _switch_to_wal(conn, deadline=time.monotonic() - 1)
    conn.close()
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        _switch_to_wal(sqlite3.connect(tmp_path / "missing" / "r.db"), time.monotonic() + 5)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port, run as the postgres user."""
    bindir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    if bindir is None or shutil.which("runuser") is None:
        pytest.skip("no PostgreSQL server (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason='pip install "psycopg[binary]"')
    as_postgres: list[str] = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="boxguard-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, log = root / "data", root / "log"

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=120)

    init = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr[-300:]}")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = run(
        str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"
    )
    if start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {start.stderr[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_replicas_write_and_prune_at_once(postgres_url: str) -> None:
    store = RecordStore.open(postgres_url)
    assert store.schema_version == 1
    one = store.add(_record(), _image(1))
    assert store.image(store.get(one)) == _image(1)  # type: ignore[arg-type]
    size = store.get(one).size_bytes  # type: ignore[union-attr]
    # Five replicas, each pruning to a cap of 20 records while the others insert.
    _writers(postgres_url, writers=5, each=12, max_bytes=size * 20)
    assert 0 < store.count() <= 61  # every write landed or was pruned: none failed
    store.prune(size * 20)  # each replica counts its own writes since its last prune: the cap
    records = store.all()  # can be overshot by what the others wrote since, until the next prune
    assert 0 < len(records) <= 20
    assert all(store.image(r) is not None for r in records)  # no row lost its image
    orphans = store.backend.execute(
        "SELECT COUNT(*) FROM images WHERE sha256 NOT IN (SELECT image_sha256 FROM records)"
    ).fetchone()[0]
    assert orphans == 0
    store.close()


def test_a_second_replica_migrates_nothing(postgres_url: str) -> None:
    stores = [RecordStore.open(postgres_url) for _ in range(3)]
    assert {s.schema_version for s in stores} == {1}
    for store in stores:
        store.close()
