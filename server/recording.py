"""`--record`: each /ground answer written to the record store, off the request path.

The service hands over what it already holds (request, image, raw output, response); a bounded
queue and one writer thread do the hashing, encoding and database work. A full queue drops the
record and counts it; a store that is down is counted and logged, never a failed request.
Headers and API keys never reach the store, nor does an `image_url` (it may carry a token).
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
import threading
from dataclasses import dataclass

from boxguard.records import Record, RecordStore
from PIL import Image

from .context import RequestContext
from .imaging import decode_base64_image
from .metrics import Metrics
from .models import ModelFrame
from .schema import GroundRequest, GroundResponse
from .settings import Settings

log = logging.getLogger("boxguard.server.recording")

# Encodings kept as sent when the decoded image is exactly what the model saw.
_KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Observation:
    """One answered request, as the service held it."""

    req: GroundRequest
    upload: bytes | None
    image: Image.Image
    frame: ModelFrame
    raw_output: str
    response: GroundResponse


class Recorder:
    """The queue and writer thread in front of one RecordStore.

    Example:
        >>> recorder = Recorder(RecordStore.open("/tmp/boxguard-rec"), metrics)  # doctest: +SKIP
        >>> recorder.start()  # doctest: +SKIP
    """

    def __init__(
        self, store: RecordStore, metrics: Metrics, *, queue_size: int = 64, max_bytes: int = 0
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.queue: queue.Queue[Observation | None] = queue.Queue(maxsize=queue_size)
        self.thread = threading.Thread(target=self._write_loop, name="boxguard-recorder")

    def start(self) -> None:
        """Start the writer thread."""
        self.thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (up to `timeout_s`), then stop and close the store."""
        self.queue.put(None)
        self.thread.join(timeout_s)
        dropped = 0
        while True:
            try:
                dropped += self.queue.get_nowait() is not None
            except queue.Empty:
                break
        if dropped:
            self.metrics.records_dropped.labels("shutdown").inc(dropped)
        if not self.thread.is_alive():
            self.store.close()

    def submit(
        self,
        ctx: RequestContext,
        req: GroundRequest,
        upload: bytes | None,
        image: Image.Image,
        frame: ModelFrame,
        raw_output: str,
        response: GroundResponse,
    ) -> None:
        """Queue one answer for writing; never blocks (a full queue drops and counts it)."""
        try:
            self.queue.put_nowait(Observation(req, upload, image, frame, raw_output, response))
        except queue.Full:
            self.metrics.records_dropped.labels("queue_full").inc()
            log.warning("request %s not recorded: the record queue is full", ctx.id)

    def _write_loop(self) -> None:
        """Write observations until the None sentinel."""
        while (item := self.queue.get()) is not None:
            try:
                self.write(item)
            except Exception:
                self.metrics.record_errors.inc()
                log.exception("request %s could not be recorded", item.response.id)
                self._reconnect()
            else:
                self.metrics.records_written.inc()

    def _reconnect(self) -> None:
        """Try a fresh connection for the next write; a store still down is logged once more."""
        try:
            self.store.reconnect()
        except Exception as exc:
            log.warning("the record store is unreachable: %s", exc)

    def write(self, item: Observation) -> int:
        """Store one observation (and prune to the size cap); returns its record id."""
        data, ext = image_file(item)
        res = item.response
        verdict = res.model_dump(
            mode="json", include={"status", "detections", "candidates", "checks", "reasons"}
        )
        verdict["think"] = res.think
        record = Record(
            request_id=res.id,
            model=res.model,
            frame=item.frame.frame,
            status=res.status,
            expression=item.req.expression,
            options=item.req.model_dump(
                mode="json", include={"multiple", "think", "return_raw", "policy"}
            ),
            raw_output=item.raw_output,
            verdict=verdict,
            timings=dict(res.timings_ms),
            image_sha256="",
            image_ext=ext,
            image_width=item.image.width,
            image_height=item.image.height,
            model_width=item.frame.width,
            model_height=item.frame.height,
        )
        record_id = self.store.add(record, data)
        if self.max_bytes and self.store.total_bytes > self.max_bytes:
            self.store.prune(self.max_bytes)
        return record_id


def image_file(item: Observation) -> tuple[bytes, str]:
    """The bytes to store and their extension: as sent when they decode to exactly the image
    the model saw (upright, RGB or grey), else that image as PNG."""
    data = item.upload
    if data is None and item.req.image is not None:
        data = decode_base64_image(item.req.image)
    if data is not None:
        with Image.open(io.BytesIO(data)) as sent:
            ext = _KEPT_FORMATS.get(sent.format or "")
            upright = sent.getexif().get(_EXIF_ORIENTATION, 1) == 1
            if ext and upright and sent.mode in ("RGB", "L") and sent.size == item.image.size:
                return data, ext
    buf = io.BytesIO()
    item.image.save(buf, "PNG", compress_level=1)
    return buf.getvalue(), "png"


def open_recorder(url: str, metrics: Metrics, *, queue_size: int, max_bytes: int) -> Recorder:
    """Open (and migrate) the store at `url` and start its writer thread."""
    recorder = Recorder(RecordStore.open(url), metrics, queue_size=queue_size, max_bytes=max_bytes)
    recorder.start()
    log.info("recording /ground requests to %s", url.split("@")[-1])
    return recorder


async def start_recording(settings: Settings, metrics: Metrics) -> Recorder | None:
    """The recorder `--record` asks for (None when recording is off), opened off the loop."""
    if not settings.record:
        return None
    return await asyncio.to_thread(
        open_recorder,
        settings.record,
        metrics,
        queue_size=settings.record_queue_size,
        max_bytes=settings.record_max_bytes,
    )
