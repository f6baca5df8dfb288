"""The AsyncClient: same behaviour as Client, awaited."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from boxguard.clients import (
    AsyncClient,
    BadRequest,
    ConnectionFailed,
    GroundResult,
    Overloaded,
    ServiceUnavailable,
    Unauthorized,
)
from sdk_fakes import fail, make_body, ok, png_bytes


class AsyncFake:
    """Queued answers (the last repeats) behind an async MockTransport."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        return item

    def client(self, **kwargs: object) -> AsyncClient:
        """An AsyncClient on this fake."""
        return AsyncClient("http://t", transport=httpx.MockTransport(self), **kwargs)  # type: ignore[arg-type]


async def test_async_ground_returns_result_with_api_key() -> None:
    fake = AsyncFake(ok(make_body(status="abstained", reasons=["confidence"])))
    async with fake.client(api_key="k") as client:
        result = await client.ground(png_bytes(), "the dog", think=True)
    assert isinstance(result, GroundResult) and result.abstained
    assert result.reasons == ["confidence"]
    assert fake.requests[0].headers["authorization"] == "Bearer k"
    assert json.loads(fake.requests[0].content)["think"] is True


async def test_async_retries_honour_retry_after(async_sleeps: list[float]) -> None:
    fake = AsyncFake(
        fail(503, "backend_unavailable", {"Retry-After": "2"}),
        httpx.ConnectError("refused"),
        ok(),
    )
    async with fake.client(backoff=0.25) as client:
        client._random = lambda: 0.0
        assert (await client.ground(png_bytes(), "a")).accepted
    assert async_sleeps == [2.0, 0.5]


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequest), (401, Unauthorized), (429, Overloaded), (503, ServiceUnavailable)],
)
async def test_async_error_mapping_without_retries(
    status: int, cls: type, async_sleeps: list[float]
) -> None:
    fake = AsyncFake(fail(status, "c"))
    async with fake.client(retries=0) as client:
        with pytest.raises(cls) as info:
            await client.ground(png_bytes(), "a")
    assert info.value.code == "c" and info.value.request_id == "rid-p"
    assert len(fake.requests) == 1 and async_sleeps == []


async def test_async_connection_failure_after_retries(async_sleeps: list[float]) -> None:
    fake = AsyncFake(httpx.ConnectError("refused"))
    async with fake.client(retries=2) as client:
        with pytest.raises(ConnectionFailed):
            await client.ground(png_bytes(), "a")
    assert len(fake.requests) == 3 and len(async_sleeps) == 2


async def test_async_ground_many_bounds_concurrency_and_keeps_order() -> None:
    state = {"active": 0, "peak": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
        await asyncio.sleep(0.01)
        state["active"] -= 1
        label = json.loads(request.content)["expression"]
        return ok(make_body(detections=[{"bbox": [0, 0, 5, 5], "label": label}]))

    async with AsyncClient("http://t", transport=httpx.MockTransport(handler)) as client:
        results = await client.ground_many(
            [(png_bytes(), f"e{i}") for i in range(10)], concurrency=4, progress=True
        )
    assert [r.detections[0].label for r in results if isinstance(r, GroundResult)] == [
        f"e{i}" for i in range(10)
    ]
    assert state["peak"] == 4


async def test_async_ground_many_errors() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return fail(400, "bad") if b'"bad"' in request.content else ok()

    items = [(png_bytes(), "ok"), (png_bytes(), "bad")]
    async with AsyncClient("http://t", transport=httpx.MockTransport(handler)) as client:
        out = await client.ground_many(items, progress=False, return_exceptions=True)
        assert isinstance(out[0], GroundResult) and isinstance(out[1], BadRequest)
        with pytest.raises(BadRequest):
            await client.ground_many(items, progress=False)
