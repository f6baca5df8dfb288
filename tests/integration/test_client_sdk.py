"""The SDK against the real server on loopback (tiny built-in checkpoint)."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import numpy as np
import pytest
from boxguard.clients import (
    AsyncClient,
    BadRequest,
    Client,
    ConnectionFailed,
    GroundResult,
    PayloadTooLarge,
)
from PIL import Image


def png(size: tuple[int, int] = (320, 240), color: str = "white") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def check_result(result: GroundResult, width: int, height: int) -> None:
    """Whatever the random tiny model says, the result is well-formed and in original pixels."""
    assert isinstance(result, GroundResult)
    assert result.status in ("accepted", "abstained")
    assert (result.image.width, result.image.height) == (width, height)
    for det in result.detections + result.candidates:
        x1, y1, x2, y2 = det.bbox
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    if result.abstained:
        assert result.reasons and not result.detections


def test_ground_every_image_type(live_server: str, tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    path.write_bytes(png((320, 240)))
    array = np.full((240, 320, 3), 255, dtype=np.uint8)
    with Client(live_server) as client:
        for image in (png((320, 240)), path, str(path), Image.open(path), array):
            result = client.ground(image, "the red circle")
            check_result(result, 320, 240)
            assert result.request_id == result.id


def test_ground_options_request_id_and_draw(live_server: str) -> None:
    with Client(live_server) as client:
        result = client.ground(
            png((400, 300)),
            "the blue square",
            multiple=True,
            think=True,
            return_raw=True,
            request_id="sdk-trace-1",
        )
    check_result(result, 400, 300)
    assert result.request_id == "sdk-trace-1"
    assert result.raw_output is not None
    drawn = result.draw(png((400, 300)))
    assert drawn.size == (400, 300)
    assert isinstance(result.to_coco(1), list)


def test_health_and_ready(live_server: str) -> None:
    with Client(live_server) as client:
        assert client.health().status == "ok"
        ready = client.ready()
        assert ready.status == "ready" and ready.model


def test_server_errors_map_to_sdk_errors(live_server: str) -> None:
    with Client(live_server, retries=0) as client:
        with pytest.raises(BadRequest) as info:
            client.ground(b"this is not an image", "x")
        assert info.value.code == "invalid_image" and info.value.status_code == 400
        assert info.value.request_id
        with pytest.raises(BadRequest) as info:
            client.ground("https://example.com/a.png", "x")
        assert info.value.code == "image_url_disabled" and info.value.status_code == 403
        with pytest.raises(PayloadTooLarge) as info:
            client.ground(png((2100, 2000)), "x")  # over max_image_pixels = 4,000,000
        assert info.value.code == "image_too_many_pixels"
        with pytest.raises(PayloadTooLarge) as info:
            client.ground(np.random.default_rng(0).bytes(3 * 1024 * 1024), "x")  # body > 2 MiB
        assert info.value.code == "payload_too_large"
        # The server keeps serving afterwards.
        check_result(client.ground(png(), "the red circle"), 320, 240)


def test_policy_out_of_bounds_is_refused(live_server: str) -> None:
    with Client(live_server, retries=0) as client, pytest.raises(BadRequest) as info:
        client.ground(png(), "x", policy={"min_confidence": 7})
    assert info.value.status_code == 422


def test_async_ground_many(live_server: str) -> None:
    async def main() -> list:
        async with AsyncClient(live_server) as client:
            return await client.ground_many(
                [(png((160 + 8 * i, 120)), f"shape {i}") for i in range(4)],
                concurrency=2,
                progress=False,
            )

    results = asyncio.run(main())
    for i, result in enumerate(results):
        assert isinstance(result, GroundResult)
        check_result(result, 160 + 8 * i, 120)


def test_sync_ground_many(live_server: str) -> None:
    with Client(live_server) as client:
        results = client.ground_many(
            [(png(), "a"), (png(), "b"), (png(), "c")], concurrency=3, progress=False
        )
    assert all(isinstance(r, GroundResult) for r in results)


def test_connection_failure_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    client = Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.01)
    with client, pytest.raises(ConnectionFailed):
        client.ground(png(), "x")
