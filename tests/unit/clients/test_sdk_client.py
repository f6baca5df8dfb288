"""The sync Client against an httpx MockTransport: payloads, headers, errors and retries."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from boxguard.clients import (
    BadRequest,
    BoxguardError,
    Client,
    ConnectionFailed,
    GroundItem,
    GroundResult,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    Timeout,
    Unauthorized,
)
from PIL import Image
from sdk_fakes import FakeServer, fail, make_body, ok, png_bytes


def client_for(fake: FakeServer, **kwargs: object) -> Client:
    """A Client talking to the fake server."""
    return Client("http://boxguard.test", transport=fake.transport(), **kwargs)  # type: ignore[arg-type]


def decoded(body: dict) -> Image.Image:
    """The image a request body carries."""
    return Image.open(io.BytesIO(base64.b64decode(body["image"])))


# --- payloads ---------------------------------------------------------------------------------


def test_ground_sends_json_and_returns_typed_result() -> None:
    fake = FakeServer(ok(make_body(detections=[{"bbox": [1, 2, 30, 40], "label": "cat"}])))
    with client_for(fake) as client:
        result = client.ground(png_bytes(), "the cat", multiple=True, think=True)
    assert isinstance(result, GroundResult)
    assert result.accepted and result.boxes == [[1.0, 2.0, 30.0, 40.0]]
    assert result.request_id == "rid-1"
    (request,) = fake.requests
    assert request.method == "POST" and request.url.path == "/ground"
    assert request.headers["content-type"] == "application/json"
    body = fake.bodies[0]
    assert body["expression"] == "the cat"
    assert body["multiple"] is True and body["think"] is True
    assert "policy" not in body and "image_url" not in body


def test_bytes_and_paths_are_sent_as_is(tmp_path: Path) -> None:
    raw = png_bytes(color="red")
    path = tmp_path / "x.png"
    path.write_bytes(raw)
    fake = FakeServer(ok())
    with client_for(fake) as client:
        client.ground(raw, "a")
        client.ground(path, "a")
        client.ground(str(path), "a")
    assert [base64.b64decode(b["image"]) for b in fake.bodies] == [raw, raw, raw]


def test_pil_and_numpy_are_sent_as_png() -> None:
    fake = FakeServer(ok())
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[:, :, 0] = 255
    with client_for(fake) as client:
        client.ground(Image.new("RGB", (33, 22), "blue"), "a")
        client.ground(array, "a")
        client.ground(np.ones((5, 6), dtype=np.float32), "a")
    pil, arr, floats = (decoded(b) for b in fake.bodies)
    assert pil.format == "PNG" and pil.size == (33, 22)
    assert arr.size == (20, 10) and arr.getpixel((0, 0)) == (255, 0, 0)
    assert floats.getpixel((0, 0)) == 255


def test_url_is_sent_as_image_url_and_policy_passes_through() -> None:
    fake = FakeServer(ok())
    with client_for(fake) as client:
        client.ground("https://example.com/a.jpg", "a", policy={"min_confidence": 0.5})
    body = fake.bodies[0]
    assert body["image_url"] == "https://example.com/a.jpg" and "image" not in body
    assert body["policy"] == {"min_confidence": 0.5}


def test_invalid_inputs_fail_before_sending() -> None:
    fake = FakeServer(ok())
    with client_for(fake) as client:
        with pytest.raises(ValueError):
            client.ground(png_bytes(), "")
        with pytest.raises(TypeError):
            client.ground(12345, "a")  # type: ignore[arg-type]
    assert fake.requests == []


# --- headers and configuration ----------------------------------------------------------------


def test_api_key_header_from_argument_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeServer(ok())
    with client_for(fake, api_key="s3cret") as client:
        client.ground(png_bytes(), "a")
    assert fake.requests[-1].headers["authorization"] == "Bearer s3cret"
    monkeypatch.setenv("BOXGUARD_API_KEY", "from-env")
    with client_for(fake) as client:
        client.ground(png_bytes(), "a")
    assert fake.requests[-1].headers["authorization"] == "Bearer from-env"
    monkeypatch.delenv("BOXGUARD_API_KEY")
    with client_for(fake) as client:
        client.ground(png_bytes(), "a")
    assert "authorization" not in fake.requests[-1].headers


def test_base_url_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOXGUARD_URL", raising=False)
    with Client() as client:
        assert client.base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("BOXGUARD_URL", "http://gpu-box:9000/")
    with Client() as client:
        assert client.base_url == "http://gpu-box:9000"


def test_request_id_is_sent_and_kept_across_retries(sleeps: list[float]) -> None:
    fake = FakeServer(fail(503, "backend_unavailable"), ok())
    with client_for(fake) as client:
        client.ground(png_bytes(), "a", request_id="trace-7")
    assert [r.headers["x-request-id"] for r in fake.requests] == ["trace-7", "trace-7"]


def test_per_call_timeout_overrides_default() -> None:
    fake = FakeServer(ok())
    with client_for(fake, timeout=50.0) as client:
        client.ground(png_bytes(), "a", timeout=3.0)
    assert fake.requests[0].extensions["timeout"]["read"] == 3.0


# --- error mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_image", BadRequest),
        (401, "unauthorized", Unauthorized),
        (403, "image_url_disabled", BadRequest),
        (413, "payload_too_large", PayloadTooLarge),
        (413, "image_too_many_pixels", PayloadTooLarge),
        (415, "unsupported_media_type", BadRequest),
        (422, "validation_error", BadRequest),
        (429, "overloaded", Overloaded),
        (500, "internal_error", ServerError),
        (502, "bad_gateway", ServerError),
        (503, "backend_unavailable", ServiceUnavailable),
        (504, "generation_timeout", Timeout),
    ],
)
def test_error_statuses_map_to_exceptions(status: int, code: str, cls: type) -> None:
    fake = FakeServer(fail(status, code))
    with client_for(fake, retries=0) as client, pytest.raises(cls) as info:
        client.ground(png_bytes(), "a")
    err = info.value
    assert isinstance(err, BoxguardError)
    assert (err.status_code, err.code, err.detail, err.request_id) == (
        status,
        code,
        "nope",
        "rid-p",
    )
    assert err.problem is not None and err.problem.code == code
    assert "rid-p" in str(err)


def test_non_problem_error_body_uses_header_request_id() -> None:
    fake = FakeServer(httpx.Response(502, text="upstream down", headers={"X-Request-ID": "h-1"}))
    with client_for(fake, retries=0) as client, pytest.raises(ServerError) as info:
        client.ground(png_bytes(), "a")
    assert info.value.request_id == "h-1" and info.value.detail == "upstream down"
    assert info.value.code == "internal_error"


def test_malformed_success_body_is_a_server_error() -> None:
    fake = FakeServer(httpx.Response(200, json={"hello": "world"}))
    with client_for(fake) as client, pytest.raises(ServerError) as info:
        client.ground(png_bytes(), "a")
    assert info.value.code == "malformed_response"


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "bad_request"), (401, "unauthorized"), (413, "payload_too_large"), (422, "x")],
)
def test_no_retry_on_client_errors(status: int, code: str, sleeps: list[float]) -> None:
    fake = FakeServer(fail(status, code), ok())
    with client_for(fake, retries=5) as client, pytest.raises(BoxguardError):
        client.ground(png_bytes(), "a")
    assert len(fake.requests) == 1 and sleeps == []


def test_no_retry_on_500_or_read_timeout(sleeps: list[float]) -> None:
    fake = FakeServer(fail(500, "internal_error"), ok())
    with client_for(fake) as client, pytest.raises(ServerError):
        client.ground(png_bytes(), "a")
    fake = FakeServer(httpx.ReadTimeout("slow"), ok())
    with client_for(fake) as client, pytest.raises(Timeout):
        client.ground(png_bytes(), "a")
    assert len(fake.requests) == 1 and sleeps == []


def test_retry_after_is_honoured_on_429_and_503(sleeps: list[float]) -> None:
    fake = FakeServer(
        fail(429, "overloaded", {"Retry-After": "3"}),
        fail(503, "backend_unavailable", {"Retry-After": "7"}),
        ok(),
    )
    with client_for(fake) as client:
        assert client.ground(png_bytes(), "a").accepted
    assert sleeps == [3.0, 7.0]
    assert len(fake.requests) == 3


def test_retry_after_http_date_and_cap(sleeps: list[float]) -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake = FakeServer(
        fail(503, "backend_unavailable", {"Retry-After": future}),
        fail(429, "overloaded", {"Retry-After": "3600"}),
        ok(),
    )
    with client_for(fake) as client:
        client.ground(png_bytes(), "a")
    assert 25 <= sleeps[0] <= 31
    assert sleeps[1] == 60.0  # capped at RetryPolicy.max_retry_after


def test_exponential_backoff_with_jitter_on_connection_errors(sleeps: list[float]) -> None:
    fake = FakeServer(*([httpx.ConnectError("refused")] * 4), ok())
    with client_for(fake, retries=4, backoff=0.5, max_backoff=1.5) as client:
        client._random = lambda: 0.0  # no jitter: the full exponential delay
        assert client.ground(png_bytes(), "a").accepted
    assert sleeps == [0.5, 1.0, 1.5, 1.5]  # doubled, capped at max_backoff


def test_jitter_shortens_delays_within_bounds(sleeps: list[float]) -> None:
    fake = FakeServer(httpx.ConnectError("refused"), httpx.ConnectError("refused"), ok())
    with client_for(fake, backoff=1.0) as client:
        client._random = lambda: 1.0  # the largest jitter: half the delay
        client.ground(png_bytes(), "a")
    assert sleeps == [0.5, 1.0]
    sleeps.clear()
    fake = FakeServer(*([httpx.ConnectError("refused")] * 3), ok())
    with client_for(fake, backoff=1.0) as client:
        client.ground(png_bytes(), "a")
    assert [0.5 <= s <= 1.0 for s in sleeps[:1]] == [True]
    assert all(2 ** (i - 1) <= s <= 2**i for i, s in enumerate(sleeps))


def test_connect_timeout_is_a_retried_connection_failure(sleeps: list[float]) -> None:
    fake = FakeServer(httpx.ConnectTimeout("slow connect"), ok())
    with client_for(fake) as client:
        client.ground(png_bytes(), "a")
    assert len(sleeps) == 1


def test_retries_exhausted_raise_the_last_error(sleeps: list[float]) -> None:
    fake = FakeServer(httpx.ConnectError("refused"))
    with client_for(fake, retries=3) as client, pytest.raises(ConnectionFailed):
        client.ground(png_bytes(), "a")
    assert len(fake.requests) == 4 and len(sleeps) == 3


def test_retries_zero_turns_retrying_off(sleeps: list[float]) -> None:
    fake = FakeServer(fail(429, "overloaded", {"Retry-After": "1"}), ok())
    with client_for(fake, retries=0) as client, pytest.raises(Overloaded) as info:
        client.ground(png_bytes(), "a")
    assert info.value.retry_after == 1.0
    assert len(fake.requests) == 1 and sleeps == []


def test_negative_retries_rejected() -> None:
    with pytest.raises(ValueError):
        Client(retries=-1)


# --- ground_many and health -------------------------------------------------------------------


def test_ground_many_keeps_order_and_bounds_concurrency() -> None:
    lock = threading.Lock()
    state = {"active": 0, "peak": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        time.sleep(0.02)
        with lock:
            state["active"] -= 1
        label = json.loads(request.content)["expression"]
        return ok(make_body(detections=[{"bbox": [0, 0, 5, 5], "label": label}]))

    items = [(png_bytes(), f"item {i}") for i in range(12)]
    with Client("http://t", transport=httpx.MockTransport(handler)) as client:
        results = client.ground_many(items, concurrency=3, progress=True)
    labels = [r.detections[0].label for r in results if isinstance(r, GroundResult)]
    assert labels == [f"item {i}" for i in range(12)]
    assert 1 < state["peak"] <= 3


def test_ground_many_accepts_dicts_and_items_with_per_item_options() -> None:
    fake = FakeServer(ok())
    items = [
        {"image": png_bytes(), "expression": "a", "think": True},
        GroundItem(png_bytes(), "b", multiple=True),
        (png_bytes(), "c"),
    ]
    with client_for(fake) as client:
        client.ground_many(items, concurrency=1, progress=False, multiple=False)
    by_expr = {b["expression"]: b for b in fake.bodies}
    assert by_expr["a"]["think"] is True and by_expr["a"]["multiple"] is False
    assert by_expr["b"]["multiple"] is True
    with client_for(fake) as client, pytest.raises(TypeError):
        client.ground_many(["not an item"], progress=False)


def test_ground_many_errors_raise_or_are_returned() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if b'"bad"' in request.content:
            return fail(400, "invalid_image")
        return ok()

    items = [(png_bytes(), "good"), (png_bytes(), "bad"), (png_bytes(), "good")]
    with Client("http://t", transport=httpx.MockTransport(handler)) as client:
        out = client.ground_many(items, progress=False, return_exceptions=True)
        assert [type(o).__name__ for o in out] == ["GroundResult", "BadRequest", "GroundResult"]
        with pytest.raises(BadRequest):
            client.ground_many(items, progress=False)


def test_health_and_ready() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(503, json={"status": "not_ready"})

    with Client("http://t", transport=httpx.MockTransport(handler)) as client:
        assert client.health().status == "ok"
        assert client.ready().status == "not_ready"


def test_a_missing_image_file_is_a_typed_error(tmp_path: Path) -> None:
    from boxguard.clients import BoxguardError, Client, ImageNotFound

    missing = tmp_path / "nope.jpg"
    with Client("http://127.0.0.1:9") as client, pytest.raises(ImageNotFound) as caught:
        client.ground(missing, "the cat")
    assert isinstance(caught.value, BoxguardError) and isinstance(caught.value, FileNotFoundError)
    assert str(missing) in str(caught.value) and caught.value.code == "image_not_found"
