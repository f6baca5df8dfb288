"""A full queue answers 429 with Retry-After instead of growing; every request is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from boxguard.server.app import create_app
from boxguard.server.settings import Settings
from support import b64, png_bytes, serve_in_thread


def test_full_queue_answers_429_with_retry_after(tiny_checkpoint: Path) -> None:
    settings = Settings(
        model=str(tiny_checkpoint),
        queue_size=2,
        max_batch_size=1,
        retry_after_s=3,
        max_new_tokens=64,
    )
    body = {"image": b64(png_bytes()), "expression": "the red circle"}

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(
                *(client.post(url + "/ground", json=body) for _ in range(12))
            )

    with serve_in_thread(create_app(settings)) as url:
        responses = asyncio.run(burst(url))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 429}, statuses
        assert 429 in statuses and 200 in statuses
        for r in responses:
            if r.status_code == 429:
                assert r.headers["retry-after"] == "3"
                assert r.json()["code"] == "overloaded"
        # After the burst the server still serves.
        assert httpx.post(url + "/ground", json=body, timeout=60).status_code == 200
