"""API keys, CORS, and what errors and logs may carry (never traces, paths, keys or images)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rel_support import assert_clean_text, assert_problem
from support import b64, png_bytes, serve_in_thread

KEYS = ["k-alpha-0123456789", "k-beta-9876543210"]
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def keyed_server(tiny_checkpoint: Path) -> Iterator[str]:
    """API keys on, /metrics behind the key, CORS for one origin."""
    from boxguard.server.app import create_app
    from boxguard.server.settings import Settings

    settings = Settings(
        model=str(tiny_checkpoint),
        api_keys=",".join(KEYS),  # the env form: comma-separated
        metrics_require_key=True,
        cors_origins=[ORIGIN],
        min_pixels=28 * 28 * 4,
        max_pixels=28 * 28 * 16,
        max_new_tokens=8,
    )
    assert settings.api_keys == KEYS
    with serve_in_thread(create_app(settings)) as url:
        yield url


BODY = {"image": b64(png_bytes((64, 48))), "expression": "the red circle"}
IMAGE_PREFIX = BODY["image"][:40]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {KEYS[0]}x"},
        {"authorization": f"Bearer {KEYS[0][:-1]}"},
        {"authorization": f"Basic {KEYS[0]}"},
        {"authorization": "Bearer"},
        {"x-api-key": "nope"},
        {"x-api-key": KEYS[0].upper()},
        {"authorization": "Bearer \u00e9\u00e9"},
    ],
    ids=["none", "wrong", "suffix", "prefix", "basic", "empty", "x-api-key", "case", "latin1"],
)
def test_missing_or_wrong_key_is_a_401_problem(keyed_server: str, headers: dict[str, str]) -> None:
    encoded = {k: v.encode("latin-1") for k, v in headers.items()}
    r = httpx.post(keyed_server + "/ground", json=BODY, headers=encoded, timeout=30)
    assert_problem(r, 401, "unauthorized", secrets=tuple(KEYS))
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {KEYS[0]}"},
        {"authorization": f"bearer {KEYS[1]}"},
        {"x-api-key": KEYS[1]},
    ],
    ids=["bearer", "bearer-lowercase", "x-api-key"],
)
def test_valid_key_passes(keyed_server: str, headers: dict[str, str]) -> None:
    r = httpx.post(
        keyed_server + "/ground",
        json={"image": "AAAA", "expression": "x"},
        headers=headers,
        timeout=30,
    )
    assert_problem(r, 400, "invalid_image", secrets=tuple(KEYS))  # past the key check


def test_valid_key_grounds(keyed_server: str) -> None:
    r = httpx.post(
        keyed_server + "/ground",
        json=BODY,
        headers={"authorization": f"Bearer {KEYS[0]}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert_clean_text(r.text, tuple(KEYS))


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Bearer wrong"), ("authorization", f"Bearer {KEYS[0]}")],
        [("authorization", f"Bearer {KEYS[0]}"), ("authorization", "Bearer wrong")],
        [("authorization", f"Bearer {KEYS[0]}"), ("authorization", f"Bearer {KEYS[0]}")],
        [("x-api-key", "nope"), ("x-api-key", KEYS[1])],
        [("x-api-key", KEYS[1]), ("x-api-key", KEYS[1])],
    ],
    ids=["wrong-then-right", "right-then-wrong", "same-twice", "x-api-key-twice", "x-api-same"],
)
def test_a_repeated_credential_header_is_refused(
    keyed_server: str, headers: list[tuple[str, str]]
) -> None:
    r = httpx.post(keyed_server + "/ground", json=BODY, headers=headers, timeout=30)
    body = assert_problem(r, 401, "unauthorized", secrets=tuple(KEYS))
    assert "not several" in body["detail"]


def test_health_and_readiness_stay_open(keyed_server: str) -> None:
    assert httpx.get(keyed_server + "/healthz", timeout=10).status_code == 200
    assert httpx.get(keyed_server + "/readyz", timeout=10).status_code == 200
    # Load balancers probe with HEAD: the same status, no body.
    for path in ("/healthz", "/readyz"):
        r = httpx.head(keyed_server + path, timeout=10)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code)


def test_metrics_behind_the_key_when_configured(keyed_server: str) -> None:
    assert_problem(httpx.get(keyed_server + "/metrics", timeout=10), 401, "unauthorized")
    r = httpx.get(keyed_server + "/metrics", headers={"x-api-key": KEYS[0]}, timeout=10)
    assert r.status_code == 200 and "boxguard_requests_total" in r.text
    assert_clean_text(r.text.replace(".py", ""), tuple(KEYS))


async def _asgi_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_metrics_open_when_not_configured() -> None:
    from boxguard.server.security import ApiKeyMiddleware

    app = ApiKeyMiddleware(_asgi_ok, keys=KEYS, metrics_require_key=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.post("/ground")).status_code == 401
    open_app = ApiKeyMiddleware(_asgi_ok, keys=[], metrics_require_key=True)
    transport = httpx.ASGITransport(app=open_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/ground")).status_code == 200  # no keys: open


def test_key_comparison_is_constant_time_over_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from boxguard.server import security

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    keys = ["first", "second", "third"]
    assert security.key_matches("first", keys)  # a match on the first key...
    assert len(calls) == 3  # ...still compares against every key: no early exit
    calls.clear()
    assert not security.key_matches("nope", keys) and len(calls) == 3
    assert not security.key_matches("", keys)
    assert security.key_matches("sécret", ["sécret"])  # non-ASCII keys work


def test_env_keys_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    from boxguard.server.settings import Settings

    monkeypatch.setenv("BOXGUARD_API_KEYS", " a1 , b2,, c3 ")
    monkeypatch.setenv("BOXGUARD_CORS_ORIGINS", "https://x.example")
    settings = Settings()
    assert settings.api_keys == ["a1", "b2", "c3"]
    assert settings.cors_origins == ["https://x.example"]


def test_cors_off_by_default(live_server: str) -> None:
    headers = {"origin": ORIGIN}
    r = httpx.get(live_server + "/healthz", headers=headers, timeout=10)
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(
        live_server + "/ground",
        headers={**headers, "access-control-request-method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_on_when_configured(keyed_server: str) -> None:
    r = httpx.get(keyed_server + "/healthz", headers={"origin": ORIGIN}, timeout=10)
    assert r.headers.get("access-control-allow-origin") == ORIGIN
    other = httpx.get(
        keyed_server + "/healthz", headers={"origin": "https://evil.example"}, timeout=10
    )
    assert "access-control-allow-origin" not in other.headers
    pre = httpx.options(
        keyed_server + "/ground",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
        timeout=10,
    )
    assert pre.status_code == 200  # preflight needs no key
    assert pre.headers.get("access-control-allow-origin") == ORIGIN
    # A 401 still carries CORS headers, so a browser client can read the problem.
    r = httpx.post(keyed_server + "/ground", json=BODY, headers={"origin": ORIGIN}, timeout=10)
    assert r.status_code == 401 and r.headers.get("access-control-allow-origin") == ORIGIN


def test_logs_carry_the_request_id_never_keys_or_images(
    keyed_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rid = "rid-sec-0001"
    r = httpx.post(
        keyed_server + "/ground",
        json=BODY,
        headers={"x-request-id": rid, "authorization": "Bearer leaked-wrong-key"},
        timeout=30,
    )
    assert r.status_code == 401 and r.headers["x-request-id"] == rid
    ok = httpx.post(
        keyed_server + "/ground",
        json=BODY,
        headers={"x-request-id": "rid-sec-0002", "x-api-key": KEYS[1]},
        timeout=60,
    )
    assert ok.status_code == 200 and ok.json()["id"] == "rid-sec-0002"
    bad = httpx.post(
        keyed_server + "/ground",
        json={"image": BODY["image"][:-8] + "!!!!", "expression": "x"},
        headers={"x-request-id": "rid-sec-0003", "x-api-key": KEYS[1]},
        timeout=30,
    )
    assert_problem(bad, 400, "invalid_base64")
    assert bad.json()["request_id"] == "rid-sec-0003"
    text = "\n".join(rec.getMessage() + (rec.exc_text or "") for rec in caplog.records)
    assert rid in text, "the unauthorized request is logged with its request id"
    for secret in (*KEYS, "leaked-wrong-key", IMAGE_PREFIX):
        assert secret not in text


def test_request_id_is_sanitised(keyed_server: str) -> None:
    for supplied in ("x" * 500, "bad\u00e9id", "tab\tid"):
        r = httpx.get(
            keyed_server + "/healthz",
            headers={"x-request-id": supplied.encode("latin-1")},
            timeout=10,
        )
        assert r.headers["x-request-id"] != supplied
        assert len(r.headers["x-request-id"]) == 32
