"""`--backend openai` against a fake upstream on loopback: answers, the constraint probe, faults.

Faults are never verdicts: an upstream 429 is a 429, a refusal or an unreachable upstream a 503,
an answer that is not a chat completion a 502 upstream_error, a slow upstream the request's
504 (and the upstream request is hung up on); no 500s, no abstentions; boxguard recovers when
the upstream does, without a restart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from boxguard.server.app import create_app
from boxguard.server.serve import ServeError, check_upstream, serve_in_thread
from boxguard.server.settings import Settings
from fake_upstream import (
    MODEL,
    Upstream,
    free_port,
    gateway_settings,
    running_upstream,
    wait_ready,
)
from support import b64, png_bytes, wait_until

IMAGE = b64(png_bytes((320, 240), "white"))


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def state() -> Upstream:
    return Upstream()


class Running:
    """The fake upstream on a fixed port, stopped and started again by the kill test."""

    def __init__(self, state: Upstream, port: int) -> None:
        self.state, self.port = state, port
        self.stack = ExitStack()
        self.url = ""

    def start(self) -> str:
        self.url = self.stack.enter_context(running_upstream(self.state, self.port))
        return self.url

    def stop(self) -> None:
        self.stack.close()


@pytest.fixture(scope="module")
def upstream(state: Upstream, port: int) -> Iterator[Running]:
    running = Running(state, port)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Running) -> Iterator[str]:
    """boxguard --backend openai in front of the fake."""
    with serve_in_thread(create_app(gateway_settings(upstream.url))) as url:
        yield url


def _ground(url: str, **body: object) -> httpx.Response:
    return httpx.post(
        url + "/ground", json={"image": IMAGE, "expression": "the red circle", **body}, timeout=30
    )


def test_the_gateway_grounds_through_the_upstream(gateway: str, state: Upstream) -> None:
    health = httpx.get(gateway + "/readyz").json()
    assert health["backend"] == "openai"
    assert health["constraint"] == "structured_outputs"
    assert health["model"] == MODEL
    state.bodies.clear()
    response = _ground(gateway, return_raw=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "accepted", body
    assert body["image"]["model_width"] == 308 and body["image"]["model_height"] == 252
    (detection,) = body["detections"]
    # [10, 20, 60, 80] in the 308x252 frame, mapped back to the 320x240 original.
    assert detection["bbox"] == pytest.approx([10.39, 19.05, 62.34, 76.19], abs=0.01)
    assert detection["confidence"] == pytest.approx(0.95, abs=0.05)
    (sent,) = state.bodies
    assert sent["structured_outputs"]["grammar"].startswith("r1 ::= ")
    system, user = sent["messages"]
    assert system == {"role": "system", "content": "You are a helpful assistant."}
    assert user["content"][0]["image_url"]["url"].startswith("data:image/bmp;base64,")
    assert user["content"][1]["text"].startswith("Locate the red circle in this image")
    assert sent["logprobs"] is True and sent["temperature"] == 0.0


def test_visual_check_and_samples_reach_the_upstream(gateway: str, state: Upstream) -> None:
    state.bodies.clear()
    policy = {"visual_check": True, "self_consistency_k": 3}
    response = _ground(gateway, policy=policy)
    assert response.status_code == 200, response.text
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["visual_check"]["ran"] and checks["visual_check"]["score"] == pytest.approx(0.9)
    assert checks["self_consistency"]["ran"]
    crop = next(b for b in state.bodies if b.get("max_tokens") == 1)
    assert crop["top_logprobs"] == 20 and crop["structured_outputs"]["grammar"] == (
        'root ::= "yes" | "no"'
    )
    samples = next(b for b in state.bodies if b.get("n") == 3)
    assert samples["temperature"] == pytest.approx(0.7)


def test_a_no_answer_is_p_yes_renormalized_over_yes_and_no(gateway: str, state: Upstream) -> None:
    state.p_yes = 0.2
    try:
        response = _ground(gateway, policy={"visual_check": True})
    finally:
        state.p_yes = 0.9
    body = response.json()
    assert body["status"] == "abstained" and "visual_check" in body["reasons"]
    check = next(c for c in body["checks"] if c["name"] == "visual_check")
    assert check["score"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("429", 429, "overloaded"),
        ("500", 503, "backend_unavailable"),
        ("garbage", 502, "upstream_error"),
        ("html", 502, "upstream_error"),
    ],
)
def test_upstream_faults_are_problems_never_verdicts(
    gateway: str, state: Upstream, mode: str, status: int, code: str
) -> None:
    state.mode = mode
    try:
        responses = [_ground(gateway, policy={"visual_check": True}) for _ in range(3)]
    finally:
        state.mode = "ok"
    assert [r.status_code for r in responses] == [status] * 3, responses[0].text
    assert {r.json()["code"] for r in responses} == {code}
    wait_ready(gateway)
    assert _ground(gateway).json()["status"] == "accepted"


def test_a_slow_upstream_is_the_deadline_and_is_hung_up_on(gateway: str, state: Upstream) -> None:
    state.mode, state.hung_up = "slow", 0
    try:
        started = time.monotonic()
        response = _ground(gateway)
        took = time.monotonic() - started
        deadline = time.monotonic() + 5
        while state.hung_up == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        state.mode = "ok"
    assert response.status_code == 504 and response.json()["code"] == "generation_timeout"
    assert took < 4
    assert state.hung_up == 1  # the upstream saw its request closed, not left running
    assert _ground(gateway).json()["status"] == "accepted"


def test_a_killed_upstream_is_503_then_recovers_without_restart(
    gateway: str, upstream: Running
) -> None:
    upstream.stop()
    statuses = [_ground(gateway).status_code for _ in range(3)]
    assert set(statuses) == {503}, statuses
    assert wait_until(lambda: httpx.get(gateway + "/readyz").status_code == 503)
    health = httpx.get(gateway + "/readyz").json()
    assert health["backend_state"] == "dead" and "upstream" in health["reason"]
    upstream.start()
    wait_ready(gateway)
    assert _ground(gateway).json()["status"] == "accepted"


@pytest.mark.parametrize(
    ("forms", "expected"),
    [(("guided_grammar",), "guided_grammar"), (("response_format",), "response_format")],
)
def test_the_probe_falls_back_to_weaker_constraint_forms(
    forms: tuple[str, ...], expected: str
) -> None:
    state = Upstream(forms=forms)
    with (
        running_upstream(state, free_port()) as upstream_url,
        serve_in_thread(create_app(gateway_settings(upstream_url))) as url,
    ):
        assert httpx.get(url + "/healthz").json()["constraint"] == expected
        state.bodies.clear()
        assert _ground(url).json()["status"] == "accepted"
    (answer,) = state.bodies
    assert expected in answer


def test_samples_are_k_calls_where_n_is_refused() -> None:
    state = Upstream(takes_n=False)
    with (
        running_upstream(state, free_port()) as upstream_url,
        serve_in_thread(create_app(gateway_settings(upstream_url))) as url,
    ):
        state.bodies.clear()
        response = _ground(url, policy={"self_consistency_k": 3})
        assert response.status_code == 200, response.text
    samples = [b for b in state.bodies if b.get("temperature", 0) > 0]
    assert [b["n"] for b in samples] == [1, 1, 1]
    assert sorted(b["seed"] for b in samples) == [0, 1, 2]
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["self_consistency"]["ran"]


def test_start_up_checks_are_one_line(state: Upstream) -> None:
    with pytest.raises(ServeError, match="cannot reach"):
        check_upstream(gateway_settings(f"http://127.0.0.1:{free_port()}/v1"))
    with running_upstream(state, free_port()) as upstream_url:
        with pytest.raises(ServeError, match="does not serve 'other'"):
            check_upstream(gateway_settings(upstream_url, upstream_model="other"))
        with pytest.raises(ServeError, match="answered 404"):
            check_upstream(gateway_settings(upstream_url.removesuffix("/v1") + "/nope"))
        check_upstream(gateway_settings(upstream_url))
    with pytest.raises(ServeError, match="needs --family"):
        check_upstream(Settings(backend="openai", upstream_url="http://127.0.0.1:1/v1"))


def test_serve_exits_2_in_one_line_when_the_upstream_is_not_there() -> None:
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "boxguard.cli",
            "serve",
            "--backend",
            "openai",
            "--family",
            "qwen2_5_vl",
            "--upstream-url",
            f"http://127.0.0.1:{port}/v1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --upstream-url: cannot reach"), line


def test_the_gateway_never_imports_torch(state: Upstream) -> None:
    with running_upstream(state, free_port()) as upstream_url:
        code = f"""
import sys, httpx
sys.path.insert(0, "tests")
from boxguard.server.app import create_app
from boxguard.server.serve import serve_in_thread
from boxguard.server.settings import Settings
from support import b64, png_bytes
settings = Settings(backend="openai", upstream_url={upstream_url!r}, family="qwen2_5_vl")
with serve_in_thread(create_app(settings)) as url:
    r = httpx.post(url + "/ground", json={{"image": b64(png_bytes()), "expression": "a"}})
    assert r.status_code == 200, r.text
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "xgrammar")))
"""
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
