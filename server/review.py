"""Review of recorded answers: a small JSON API over the record store and its playground page.

`GET /v1/records` lists records (abstentions to review, a sample of accepted answers), `POST
/v1/records/{id}/review` stores a person's decision beside the record: accept the model's box,
the right box drawn by hand, or "not in the image". The page at /playground/review holds no
data (it stays open like the playground); the API needs the API key when keys are on.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any, Literal

from boxguard.records import Record, RecordStore
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from .errors import BoxguardServerError, ValidationFailed
from .playground import ASSET_PREFIX

REVIEW_PAGE = ASSET_PREFIX + "review"
_STATIC = files("boxguard.server") / "static"
_MEDIA = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class RecordNotFound(BoxguardServerError):
    """No such record, or recording is off."""

    status_code = 404
    code = "not_found"


class ReviewDecision(BaseModel):
    """A person's decision on one record; boxes in original-image pixels."""

    decision: Literal["accept", "box", "absent"] = Field(
        description="accept: the model's box is right; box: `boxes` are; absent: no such object."
    )
    boxes: list[tuple[float, float, float, float]] = Field(
        default_factory=list, max_length=100, description="x1, y1, x2, y2 (decision 'box')."
    )
    note: str | None = Field(default=None, max_length=500)


class RecordPage(BaseModel):
    """One page of records, newest first; `next` is the `before` of the following page."""

    records: list[dict[str, Any]]
    next: int | None = None


router = APIRouter()


def _store(request: Request) -> RecordStore:
    """The running recorder's store, or 404 when the server records nothing."""
    recorder = getattr(request.app.state, "recorder", None)
    if recorder is None:
        raise RecordNotFound("recording is off: start the server with --record")
    store: RecordStore = recorder.store
    return store


async def _record(store: RecordStore, record_id: int) -> Record:
    """One record, or 404."""
    record = await asyncio.to_thread(store.get, record_id)
    if record is None:
        raise RecordNotFound(f"no record {record_id}")
    return record


@router.get("/v1/records", response_model=RecordPage, tags=["records"])
async def list_records(
    request: Request,
    status: Literal["accepted", "abstained"] | None = None,
    reviewed: bool | None = None,
    limit: int = Query(50, ge=1, le=500),
    before: int | None = None,
    sample: bool = Query(False, description="A random sample instead of newest first."),
) -> RecordPage:
    """Recorded requests, e.g. `?status=abstained&reviewed=false` to review."""
    store = _store(request)
    records = await asyncio.to_thread(
        store.find, status=status, reviewed=reviewed, limit=limit, before=before, sample=sample
    )
    last = records[-1].id if len(records) == limit and not sample else None
    return RecordPage(records=[r.to_json() for r in records], next=last)


@router.get("/v1/records/{record_id}", tags=["records"])
async def get_record(request: Request, record_id: int) -> dict[str, Any]:
    """One record with its review, if any."""
    return (await _record(_store(request), record_id)).to_json()


@router.get("/v1/records/{record_id}/image", tags=["records"], response_class=Response)
async def record_image(request: Request, record_id: int) -> Response:
    """The record's image as stored."""
    store = _store(request)
    record = await _record(store, record_id)
    data = await asyncio.to_thread(store.image, record)
    if data is None:
        raise RecordNotFound(f"the image of record {record_id} is gone")
    return Response(data, media_type=_MEDIA.get(record.image_ext, "application/octet-stream"))


@router.post("/v1/records/{record_id}/review", tags=["records"])
async def review_record(
    request: Request, record_id: int, decision: ReviewDecision
) -> dict[str, Any]:
    """Store a decision beside the record; returns the record with it."""
    store = _store(request)
    record = await _record(store, record_id)
    review: dict[str, Any] = {"decision": decision.decision, "boxes": _boxes(record, decision)}
    if decision.note:
        review["note"] = decision.note
    updated = await asyncio.to_thread(store.set_review, record_id, review)
    assert updated is not None  # records are pruned oldest first, never under review
    return updated.to_json()


def _boxes(record: Record, decision: ReviewDecision) -> list[list[float]]:
    """The reviewed boxes: the model's (accept), the drawn ones (box) or none (absent)."""
    if decision.decision == "absent":
        return []
    if decision.decision == "accept":
        key = "detections" if record.status == "accepted" else "candidates"
        boxes = [list(d["bbox"]) for d in record.verdict.get(key, [])]
        if not boxes and record.status == "abstained":
            raise ValidationFailed("the model gave no box to accept: draw one or mark absent")
        return boxes
    if not decision.boxes:
        raise ValidationFailed("decision 'box' needs at least one box")
    for x1, y1, x2, y2 in decision.boxes:
        if not (0 <= x1 < x2 <= record.image_width and 0 <= y1 < y2 <= record.image_height):
            raise ValidationFailed(
                f"box {[x1, y1, x2, y2]} is not inside the "
                f"{record.image_width}x{record.image_height} image with x1 < x2, y1 < y2"
            )
    return [list(box) for box in decision.boxes]


@router.get(REVIEW_PAGE, response_class=HTMLResponse, include_in_schema=False)
async def review_page() -> HTMLResponse:
    """The review page."""
    html = (_STATIC / "review.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get(REVIEW_PAGE + "/review.js", include_in_schema=False)
async def review_script() -> Response:
    """The review page's script."""
    script = (_STATIC / "review.js").read_text(encoding="utf-8")
    return Response(
        script, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )
