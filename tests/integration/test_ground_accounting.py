"""Every answered POST /ground is counted by outcome and logged once, 401 and 413 included."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from boxguard.server.access_log import JsonFormatter
from support import b64, png_bytes, serve_in_thread

KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_server(tiny_checkpoint: Path) -> Iterator[str]:
    """A real server with an API key and a 4 KiB body limit."""
    from boxguard.server.app import create_app
    from boxguard.server.settings import Settings

    settings = Settings(model=str(tiny_checkpoint), api_keys=[KEY], max_body_bytes=4096)
    with serve_in_thread(create_app(settings), settings=settings) as url:
        yield url


def _counts(url: str) -> dict[str, float]:
    """boxguard_requests_total by outcome."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.findall(r'^boxguard_requests_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


def test_every_answer_is_counted_and_logged(
    keyed_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = keyed_server + "/ground"
    auth = {"Authorization": f"Bearer {KEY}"}
    before = _counts(keyed_server)
    with caplog.at_level(logging.INFO, logger="boxguard.server"):
        answers = [
            httpx.post(url, json={"image": "x", "expression": "a"}, timeout=30),
            httpx.post(url, content=b"x" * 10_000, headers=auth, timeout=30),
            httpx.post(url, content=b"x", headers={**auth, "content-type": "text/plain"}),
            httpx.post(url, json={"image": b64(png_bytes()), "expression": "a"}, headers=auth),
        ]
        # The line is written once the response is sent: the client may see the answer first.
        deadline = time.monotonic() + 10
        while len(_ground_lines(caplog)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [r.status_code for r in answers[:3]] == [401, 413, 415]
    assert answers[3].status_code == 200, answers[3].text
    after = _counts(keyed_server)
    outcome = answers[3].json()["status"]
    for name in ("unauthorized", "payload_too_large", "unsupported_media_type", outcome):
        assert after.get(name, 0) - before.get(name, 0) == 1, name
    lines = _ground_lines(caplog)
    by_id = {r.fields["id"]: r.fields for r in lines}  # type: ignore[attr-defined]
    assert len(lines) == 4 and set(by_id) == {r.headers["x-request-id"] for r in answers}
    accepted = by_id[answers[3].headers["x-request-id"]]
    assert accepted["status"] == 200 and accepted["outcome"] == outcome
    assert accepted["reasons"] == answers[3].json()["reasons"]
    assert accepted["backend"] == "transformers" and accepted["latency_ms"] > 0
    refused = by_id[answers[1].headers["x-request-id"]]
    assert (refused["status"], refused["outcome"]) == (413, "payload_too_large")
    text = next(r.getMessage() for r in lines if r.fields is refused)  # type: ignore[attr-defined]
    assert "status=413 outcome=payload_too_large" in text


def test_json_format_puts_the_fields_on_the_line() -> None:
    record = logging.LogRecord("boxguard.server", logging.INFO, __file__, 1, "ground", (), None)
    record.fields = {"id": "abc", "status": 200, "reasons": ["geometry"]}
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "boxguard.server" and line["level"] == "INFO"
    assert (line["id"], line["status"], line["reasons"]) == ("abc", 200, ["geometry"])


def _ground_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The per-request lines logged so far."""
    return [r for r in caplog.records if r.getMessage().startswith("ground ")]
