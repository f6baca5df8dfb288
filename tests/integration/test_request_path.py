"""The request path on the real app: malformed bodies, one deadline, faults, policy, disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from boxguard.guards.embed import EmbeddingUnavailable
from boxguard.server import grounding
from boxguard.server.app import create_app
from boxguard.server.models import resize as resize_module
from boxguard.server.settings import Settings
from support import b64, png_bytes, serve_in_thread

HUGE_INT = "9" * 5000  # over CPython's 4,300-digit limit for int(str)


@pytest.fixture(scope="module")
def url(tiny_checkpoint: Path) -> Iterator[str]:
    settings = Settings(model=str(tiny_checkpoint), max_new_tokens=48, request_timeout_s=30)
    with serve_in_thread(create_app(settings)) as base:
        yield base


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


@pytest.mark.parametrize(
    "body",
    [
        '{"expression": "x", "policy": {"min_confidence": ' + HUGE_INT + "}}",
        '{"expression": ' + HUGE_INT + "}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["huge-int-in-policy", "huge-int", "deep-nesting"],
)
def test_a_malformed_json_body_is_a_400_and_the_connection_lives_on(url: str, body: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post(
            "/ground", content=body, headers={"content-type": "application/json"}
        )
        _problem(response, 400, "malformed_json")
        # The keep-alive connection was not dropped: the next request on it is answered.
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "policy", ["[" * 50_000 + "]" * 50_000, '{"min_confidence": ' + HUGE_INT + "}", "{nope"]
)
def test_a_malformed_multipart_policy_is_a_400(url: str, policy: str) -> None:
    response = httpx.post(
        url + "/ground",
        files={"image": ("a.png", png_bytes(), "image/png")},
        data={"expression": "the circle", "policy": policy},
        timeout=30,
    )
    _problem(response, 400, "malformed_json")


def test_the_response_says_which_policy_was_in_force(url: str) -> None:
    response = httpx.post(
        url + "/ground",
        json={
            "image": b64(png_bytes()),
            "expression": "the circle",
            "policy": {"min_confidence": 0.1},
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    policy = response.json()["policy"]
    assert policy["values"]["min_confidence"] == 0.1
    assert policy["sources"] == {"min_confidence": "request"}
    assert policy["values"]["visual_check"] is False  # Policy's default: no file, no flag


def test_the_deadline_covers_decoding(
    url: str, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path
) -> None:
    """A decode that outlasts the request deadline is a 504, not an answer after it."""
    real_open = grounding.open_image

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(grounding, "open_image", slow_open)
    settings = Settings(model=str(tiny_checkpoint), request_timeout_s=0.5)
    with serve_in_thread(create_app(settings)) as base:
        started = time.monotonic()
        response = httpx.post(
            base + "/ground", json={"image": b64(png_bytes()), "expression": "x"}, timeout=30
        )
        _problem(response, 504, "generation_timeout")
        assert time.monotonic() - started < 1.4  # answered at the deadline, not after decode
        metrics = httpx.get(base + "/metrics").text
        assert 'boxguard_cancelled_generations_total{cause="deadline"}' in metrics


def test_a_failed_check_dependency_is_a_503_not_an_abstention(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_prepare(*args: Any, **kwargs: Any) -> Any:
        raise EmbeddingUnavailable("the label-embedding model failed to load: OSError")

    monkeypatch.setattr(grounding, "prepare", broken_prepare)
    response = httpx.post(
        url + "/ground", json={"image": b64(png_bytes()), "expression": "the lamp"}, timeout=60
    )
    body = _problem(response, 503, "check_unavailable")
    assert response.headers["retry-after"] == "1"
    assert "OSError" not in body["detail"]  # the cause is logged, not sent
    metrics = httpx.get(url + "/metrics").text
    assert 'boxguard_requests_total{outcome="check_unavailable"}' in metrics


def test_the_frame_resize_runs_off_the_event_loop(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL's resize takes milliseconds of CPU: on the loop it would stall every other request."""
    on_loop: list[bool] = []
    real_resize = resize_module.resize_to_frame

    def recorded(image: Any, size: tuple[int, int]) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no running loop: a worker thread
            on_loop.append(False)
        return real_resize(image, size)

    monkeypatch.setattr(resize_module, "resize_to_frame", recorded)
    response = httpx.post(
        url + "/ground", json={"image": b64(png_bytes()), "expression": "the circle"}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert on_loop == [False]


def test_health_names_the_backend_state(url: str) -> None:
    for path in ("/healthz", "/readyz"):
        body = httpx.get(url + path).json()
        assert body["backend_state"] == "ready" and body["backend"] == "transformers"
        head = httpx.head(url + path)
        assert head.status_code == 200 and head.content == b""


def test_a_client_that_leaves_mid_body_is_a_disconnect_not_a_crash(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"image": b64(png_bytes()), "expression": "the circle"}).encode()
    with caplog.at_level(logging.INFO, logger="boxguard.server"):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /ground HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        metrics = ""
        while time.monotonic() < deadline:
            metrics = httpx.get(url + "/metrics").text
            if 'outcome="client_disconnected"' in metrics:
                break
            time.sleep(0.1)
    assert 'boxguard_requests_total{outcome="client_disconnected"}' in metrics
    assert "unhandled error" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
