"""A small OpenAI-compatible VLM server for the gateway tests: a real FastAPI app on loopback.

It speaks /health, /v1/models and /v1/chat/completions with logprobs, enforces the constraint
forms it is told to (`forms`), answers one box (or yes/no for one-token questions), and can be
told to fail: `mode` = "ok", "429", "500", "garbage" (200 but not a chat completion), "html"
(200 text/html) or "slow" (answers after `slow_s`, noting whether the caller hung up first).
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from boxguard.server.serve import serve_in_thread
from boxguard.server.settings import Settings
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from support import wait_until

MODEL = "fake-qwen"
PROBE = "boxguard-probe"
ANSWER = '[{"bbox_2d": [10, 20, 60, 80], "label": "red circle"}]'


@dataclass
class Upstream:
    """What the fake is told, and what it saw."""

    mode: str = "ok"
    slow_s: float = 30.0
    forms: tuple[str, ...] = ("structured_outputs",)
    processed: bool = True  # logprobs after the grammar mask
    takes_n: bool = True  # else n > 1 is a 400, as some OpenAI-compatible servers answer
    p_yes: float = 0.9
    bodies: list[dict[str, Any]] = field(default_factory=list)
    hung_up: int = 0


def _tokens(text: str, logprob: float) -> list[dict[str, Any]]:
    """Per-character tokens of `text`, each with the same logprob."""
    return [
        {"token": c, "logprob": logprob, "bytes": list(c.encode()), "top_logprobs": []}
        for c in text
    ]


def _constrained(body: dict[str, Any], forms: tuple[str, ...]) -> bool:
    """Whether the body asks for a constraint form the fake enforces."""
    return any(body.get(form) for form in forms)


def _choice(index: int, content: str, positions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": content},
        "logprobs": {"content": positions},
        "finish_reason": "stop",
    }


def _answer(state: Upstream, body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion the fake writes for `body`."""
    n = int(body.get("n") or 1)
    user = body["messages"][-1]["content"]
    if user == "Say hello.":  # the gateway's constraint probe
        if _constrained(body, state.forms):
            text = f'"{PROBE}"' if "response_format" in body else PROBE
            lp = 0.0 if state.processed else -9.0
            first = {
                "token": text,
                "logprob": lp,
                "top_logprobs": [
                    {"token": text, "logprob": lp},
                    {"token": "Hello", "logprob": -0.01},
                ],
            }
            if state.processed:
                first["top_logprobs"].pop()
            choices = [_choice(0, text, [first])]
        else:
            choices = [_choice(i, "Hello!", _tokens("Hello!", -0.1)) for i in range(n)]
    elif body.get("max_tokens") == 1:  # a yes/no question
        lp_yes, lp_no = _log(state.p_yes), _log(1 - state.p_yes)
        text = "yes" if lp_yes >= lp_no else "no"
        top = [{"token": "yes", "logprob": lp_yes}, {"token": "no", "logprob": lp_no}]
        choices = [
            _choice(i, text, [{"token": text, "logprob": max(lp_yes, lp_no), "top_logprobs": top}])
            for i in range(n)
        ]
    else:
        choices = [_choice(i, ANSWER, _tokens(ANSWER, -0.001)) for i in range(n)]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": choices,
        "usage": {"prompt_tokens": 42, "completion_tokens": 10, "total_tokens": 52},
    }


def _log(p: float) -> float:
    return math.log(max(p, 1e-12))


def fake_upstream(state: Upstream) -> FastAPI:
    """The fake's app over `state` (tests change `state` while it runs)."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({}, status_code=500 if state.mode == "500" else 200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | HTMLResponse:
        body = await request.json()
        state.bodies.append(body)
        if not state.takes_n and int(body.get("n") or 1) > 1:
            return JSONResponse({"error": {"message": "n must be 1"}}, status_code=400)
        if state.mode == "429":
            return JSONResponse({"error": {"message": "busy"}}, status_code=429)
        if state.mode == "500":
            return JSONResponse({"error": {"message": "engine died"}}, status_code=500)
        if state.mode == "garbage":
            return JSONResponse({"result": "not a chat completion"})
        if state.mode == "html":
            return HTMLResponse("<html>login</html>")
        if state.mode == "slow" and body["messages"][-1]["content"] != "Say hello.":
            deadline = time.monotonic() + state.slow_s
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    state.hung_up += 1
                    break
                await asyncio.sleep(0.05)
        return JSONResponse(_answer(state, body))

    return app


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_upstream(state: Upstream, port: int = 0) -> Iterator[str]:
    """The fake upstream on loopback; yields its /v1 URL."""
    with serve_in_thread(fake_upstream(state), port=port, ready_path="/health") as url:
        yield url + "/v1"


def gateway_settings(upstream_url: str, **extra: Any) -> Settings:
    """boxguard --backend openai in front of `upstream_url`, with short deadlines for tests."""
    base: dict[str, Any] = {
        "backend": "openai",
        "upstream_url": upstream_url,
        "family": "qwen2_5_vl",
        "request_timeout_s": 2.0,
        "backend_check_interval_s": 0.2,
        "retry_after_s": 0,
    }
    return Settings(**{**base, **extra})


def wait_ready(url: str) -> None:
    """Wait for boxguard at `url` to be ready again (its supervisor restarts a dead upstream)."""
    assert wait_until(lambda: httpx.get(url + "/readyz").status_code == 200), "never ready again"
