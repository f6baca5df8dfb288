"""The record store: one row per /ground request, its image stored once by SHA-256.

Plain DB-API over SQLite or PostgreSQL (`backends.py`); the schema is versioned in a
`schema_version` table and migrated when a store opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .backends import Backend, SqliteBackend, connect

Decision = Literal["accept", "box", "absent"]

# Version → statements; {ident} and {blob} are the backend's column types.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE records (
            id {ident}, created_at DOUBLE PRECISION NOT NULL, request_id TEXT NOT NULL,
            model TEXT NOT NULL, frame TEXT NOT NULL, status TEXT NOT NULL,
            expression TEXT NOT NULL, options TEXT NOT NULL, raw_output TEXT NOT NULL,
            verdict TEXT NOT NULL, timings TEXT NOT NULL,
            image_sha256 TEXT NOT NULL, image_ext TEXT NOT NULL,
            image_width INTEGER NOT NULL, image_height INTEGER NOT NULL,
            model_width INTEGER NOT NULL, model_height INTEGER NOT NULL,
            size_bytes BIGINT NOT NULL, review TEXT, reviewed_at DOUBLE PRECISION)""",
        "CREATE INDEX records_status ON records (status, id)",
        "CREATE INDEX records_image ON records (image_sha256)",
    ),
}
# PostgreSQL keeps image bytes in the database (replicas share no disk).
POSTGRES_ONLY: dict[int, tuple[str, ...]] = {
    1: ("CREATE TABLE images (sha256 TEXT PRIMARY KEY, ext TEXT NOT NULL, data {blob} NOT NULL)",),
}
_COLUMNS = (
    "id, created_at, request_id, model, frame, status, expression, options, raw_output, "
    "verdict, timings, image_sha256, image_ext, image_width, image_height, model_width, "
    "model_height, size_bytes, review, reviewed_at"
)
_JSON_FIELDS = ("options", "verdict", "timings", "review")


@dataclass
class Record:
    """One recorded request; `verdict` holds status, detections, candidates, checks, reasons.

    Boxes are in original-image pixels; `frame` is the model's coordinate frame (pixels or
    relative1000) and `model_width`/`model_height` its input size.
    """

    request_id: str
    model: str
    frame: str
    status: str
    expression: str
    options: dict[str, Any]
    raw_output: str
    verdict: dict[str, Any]
    timings: dict[str, float]
    image_sha256: str
    image_ext: str
    image_width: int
    image_height: int
    model_width: int
    model_height: int
    size_bytes: int = 0
    review: dict[str, Any] | None = None
    reviewed_at: float | None = None
    created_at: float = field(default_factory=time.time)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON API shows it."""
        return asdict(self)


def image_hash(data: bytes) -> str:
    """The SHA-256 hex digest that names an image in the store."""
    return hashlib.sha256(data).hexdigest()


class RecordStore:
    """Open with `RecordStore.open(url)`; thread-safe (one connection behind a lock).

    Example:
        >>> store = RecordStore.open("sqlite:///tmp/boxguard-records/records.db")  # doctest: +SKIP
        >>> store.find(status="abstained", limit=20)  # doctest: +SKIP
    """

    def __init__(self, backend: Backend, url: str = "") -> None:
        self.backend = backend
        self.url = url
        self.lock = threading.Lock()
        self._migrate()
        self.total_bytes = self._sum_bytes()

    @classmethod
    def open(cls, url: str) -> RecordStore:
        """Connect and migrate the schema to the newest version."""
        return cls(connect(url), url)

    def reconnect(self) -> None:
        """A fresh connection after a failure (the database restarted, the network blinked)."""
        with self.lock:
            with contextlib.suppress(Exception):  # the old connection is already broken
                self.backend.close()
            self.backend = connect(self.url)

    @property
    def schema_version(self) -> int:
        """The newest migration applied."""
        with self.lock:
            row = self.backend.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        """Apply the migrations this store lacks, each with its version row, in one transaction."""
        b = self.backend
        with self.lock, b.transaction(migrate=True):
            b.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = b.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            for version in sorted(v for v in MIGRATIONS if v > current):
                extra = () if isinstance(b, SqliteBackend) else POSTGRES_ONLY.get(version, ())
                for statement in (*MIGRATIONS[version], *extra):
                    b.execute(statement.format(ident=b.ident, blob=b.blob))
                b.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            if isinstance(b, SqliteBackend):  # under the write lock: no insert is mid-way
                rows = b.execute("SELECT DISTINCT image_sha256 FROM records").fetchall()
                b.sweep_orphans({r[0] for r in rows})

    def _sum_bytes(self) -> int:
        """Bytes the store's records account for (each counts its image, shared or not)."""
        with self.lock:
            row = self.backend.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM records")
            return int(row.fetchone()[0])

    def add(self, record: Record, image: bytes) -> int:
        """Store the image (once per hash) and the row in one transaction; returns the id."""
        record.image_sha256 = image_hash(image)
        record.size_bytes = len(image) + len(record.raw_output) + len(json.dumps(record.verdict))
        names = _COLUMNS.split(", ")[1:]
        values = [_column_value(name, getattr(record, name)) for name in names]
        query = f"INSERT INTO records ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        b = self.backend
        with self.lock, b.transaction():
            b.put_image(record.image_sha256, record.image_ext, image)
            row = b.execute(f"{query} RETURNING id", values).fetchone()
        record.id = int(row[0])
        self.total_bytes += record.size_bytes
        return record.id

    def prune(self, max_bytes: int) -> int:
        """Delete the oldest records until the store holds at most `max_bytes`; returns how
        many went. Images no remaining row references are deleted with them."""
        b = self.backend
        with self.lock, b.transaction(prune=True):
            total = int(b.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM records").fetchone()[0])
            excess, last, doomed = total - max_bytes, None, 0
            if excess > 0:
                rows = b.execute("SELECT id, size_bytes FROM records ORDER BY id").fetchall()
                for row_id, size in rows:
                    if excess <= 0:
                        break
                    excess, last, doomed = excess - size, row_id, doomed + 1
            if last is not None:
                images = b.execute(
                    "SELECT DISTINCT image_sha256, image_ext FROM records WHERE id <= ?", (last,)
                ).fetchall()
                b.execute("DELETE FROM records WHERE id <= ?", (last,))
                kept = {
                    r[0]
                    for r in b.execute(
                        "SELECT DISTINCT image_sha256 FROM records WHERE id > ?", (last,)
                    ).fetchall()
                }
                b.drop_images((sha, ext) for sha, ext in images if sha not in kept)
            self.total_bytes = int(
                b.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM records").fetchone()[0]
            )
        return doomed

    def find(
        self,
        *,
        status: str | None = None,
        reviewed: bool | None = None,
        limit: int = 50,
        before: int | None = None,
        sample: bool = False,
    ) -> list[Record]:
        """Records newest first (or a random sample), filtered by status and review state."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if reviewed is not None:
            where.append("review IS NOT NULL" if reviewed else "review IS NULL")
        if before is not None:
            where.append("id < ?")
            params.append(before)
        order = "RANDOM()" if sample else "id DESC"
        query = f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where)} ORDER BY {order}"
        with self.lock:
            rows = self.backend.execute(f"{query} LIMIT ?", (*params, limit)).fetchall()
        return [_record(row) for row in rows]

    def all(self) -> list[Record]:
        """Every record, oldest first."""
        with self.lock:
            rows = self.backend.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id").fetchall()
        return [_record(row) for row in rows]

    def get(self, record_id: int) -> Record | None:
        """One record by id."""
        with self.lock:
            row = self.backend.execute(
                f"SELECT {_COLUMNS} FROM records WHERE id = ?", (record_id,)
            ).fetchone()
        return None if row is None else _record(row)

    def set_review(self, record_id: int, review: dict[str, Any]) -> Record | None:
        """Store a person's decision beside the record; None when the id is unknown."""
        with self.lock, self.backend.transaction():
            self.backend.execute(
                "UPDATE records SET review = ?, reviewed_at = ? WHERE id = ?",
                (json.dumps(review), time.time(), record_id),
            )
        return self.get(record_id)

    def image(self, record: Record) -> bytes | None:
        """The record's image bytes, or None when they are gone."""
        with self.lock:
            return self.backend.read_image(record.image_sha256, record.image_ext)

    def count(self) -> int:
        """How many records the store holds."""
        with self.lock:
            return int(self.backend.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.backend.close()


def _column_value(name: str, value: Any) -> Any:
    """A field as stored: JSON text for the structured ones."""
    return json.dumps(value) if name in _JSON_FIELDS and value is not None else value


def _record(row: tuple[Any, ...]) -> Record:
    """A Record from a row in `_COLUMNS` order."""
    data = dict(zip(_COLUMNS.split(", "), row, strict=True))
    for name in _JSON_FIELDS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    return Record(**data)
