"""The two databases a record store runs on: SQLite (one server) and PostgreSQL (replicas).

Each backend owns its connection, its write transaction and where image bytes live: SQLite
keeps them as files beside the database (written to a temp name, then renamed, before the row
commits); PostgreSQL keeps them in an `images` table, so replicas need no shared volume.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

PSYCOPG_HINT = 'PostgreSQL recording needs psycopg 3: pip install "psycopg[binary]"'

# Taken shared by every write and exclusively by pruning, so pruning never deletes an image
# that an uncommitted insert on another replica is about to reference.
_PRUNE_LOCK = 0x626F7867  # "boxg"
_MIGRATE_LOCK = _PRUNE_LOCK + 1


class Backend:
    """One connection to the store's database; SQL is written with `?` placeholders."""

    ident = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob = "BLOB"
    conn: Any

    def sql(self, text: str) -> str:
        """`text` in this driver's placeholder style."""
        return text

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the cursor."""
        return self.conn.execute(self.sql(text), tuple(params))

    def transaction(self, *, prune: bool = False, migrate: bool = False) -> Any:
        """A write transaction: committed on success, rolled back on any error."""
        raise NotImplementedError

    def put_image(self, sha: str, ext: str, data: bytes) -> None:
        """Store image bytes under their hash, inside the caller's transaction."""
        raise NotImplementedError

    def read_image(self, sha: str, ext: str) -> bytes | None:
        """The stored bytes, or None when they are gone (pruned, or lost in a crash)."""
        raise NotImplementedError

    def drop_images(self, images: Iterable[tuple[str, str]]) -> None:
        """Delete images no row references any more (inside the pruning transaction)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class SqliteBackend(Backend):
    """SQLite in WAL mode; images under `<db stem>.images/ab/<sha256>.<ext>`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.images = path.with_name(path.stem + ".images")
        self.images.mkdir(exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves; check_same_thread=False: the store's
        # lock serializes the writer thread and the API's reader threads.
        self.conn = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA busy_timeout=30000")
        _switch_to_wal(self.conn, deadline=time.monotonic() + 30.0)
        self.conn.execute("PRAGMA synchronous=NORMAL")

    @contextlib.contextmanager
    def transaction(self, *, prune: bool = False, migrate: bool = False) -> Iterator[None]:
        """BEGIN IMMEDIATE: the write lock up front, so image files and rows move together."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def image_path(self, sha: str, ext: str) -> Path:
        """Where one image's file lives."""
        return self.images / sha[:2] / f"{sha}.{ext}"

    def put_image(self, sha: str, ext: str, data: bytes) -> None:
        """Write to a temp name, fsync, rename: a crash leaves the old state or the whole file."""
        final = self.image_path(sha, ext)
        if final.exists():
            return
        final.parent.mkdir(exist_ok=True)
        temp = final.with_name(f".tmp-{uuid.uuid4().hex}")
        with temp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)

    def read_image(self, sha: str, ext: str) -> bytes | None:
        """The file's bytes, or None when it is missing."""
        try:
            return self.image_path(sha, ext).read_bytes()
        except FileNotFoundError:
            return None

    def drop_images(self, images: Iterable[tuple[str, str]]) -> None:
        """Unlink the files (under the write lock, so no insert can be racing)."""
        for sha, ext in images:
            self.image_path(sha, ext).unlink(missing_ok=True)

    def sweep_orphans(self, referenced: set[str]) -> int:
        """Remove temp files and images no row references (left by a crash); returns how many."""
        removed = 0
        for file in self.images.glob("*/*"):
            if file.name.startswith(".tmp-") or file.name.split(".")[0] not in referenced:
                file.unlink(missing_ok=True)
                removed += 1
        return removed


def _switch_to_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Put a database in WAL mode, retrying while other connections race to do the same."""
    # Switching the journal mode takes an exclusive lock without calling the busy handler, so
    # replicas opening a fresh database at once get "database is locked" straight away.
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3; images in the `images` table."""

    ident = "BIGSERIAL PRIMARY KEY"
    blob = "BYTEA"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise RuntimeError(PSYCOPG_HINT) from exc
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def sql(self, text: str) -> str:
        """psycopg's %s placeholders."""
        return text.replace("?", "%s")

    @contextlib.contextmanager
    def transaction(self, *, prune: bool = False, migrate: bool = False) -> Iterator[None]:
        """A transaction holding the prune lock (shared to write, exclusive to prune)."""
        with self.conn.transaction():
            if migrate:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            elif prune:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PRUNE_LOCK,))
            else:
                self.conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_PRUNE_LOCK,))
            yield

    def put_image(self, sha: str, ext: str, data: bytes) -> None:
        """Insert once; a concurrent insert of the same image is a no-op."""
        self.execute(
            "INSERT INTO images (sha256, ext, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (sha, ext, data),
        )

    def read_image(self, sha: str, ext: str) -> bytes | None:
        """The image row's bytes, or None."""
        row = self.execute("SELECT data FROM images WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else bytes(row[0])

    def drop_images(self, images: Iterable[tuple[str, str]]) -> None:
        """Delete the image rows."""
        for sha, _ in images:
            self.execute("DELETE FROM images WHERE sha256 = ?", (sha,))


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite store URL (a directory gets records.db); None for Postgres.

    Example:
        >>> str(sqlite_path("sqlite:///var/lib/boxguard"))
        '/var/lib/boxguard/records.db'
    """
    if url.startswith(("postgresql://", "postgres://")):
        return None
    path = Path(url.removeprefix("sqlite://")) if url.startswith("sqlite://") else Path(url)
    return path / "records.db" if path.is_dir() or not path.suffix else path


def connect(url: str) -> Backend:
    """The backend for a store URL: sqlite:///path, a plain path, or postgresql://..."""
    path = sqlite_path(url)
    return PostgresBackend(url) if path is None else SqliteBackend(path)
