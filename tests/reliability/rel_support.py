"""Shared helpers of the reliability tests: problem+json checks, leak scans, a request tally."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any

import httpx

# Every `code` the server may answer with (README's error table plus 401, 408, 499 and the
# HTTP-layer codes of problems.py). A code outside this set is a contract break.
KNOWN_CODES = frozenset(
    {
        "invalid_image",
        "invalid_base64",
        "missing_image",
        "image_too_small",
        "aspect_ratio_too_large",
        "malformed_json",
        "bad_request",
        "unauthorized",
        "image_url_disabled",
        "image_url_refused",
        "upload_timeout",
        "payload_too_large",
        "image_too_many_pixels",
        "unsupported_media_type",
        "validation_error",
        "invalid_policy",
        "image_fetch_failed",
        "overloaded",
        "backend_unavailable",
        "too_many_connections",
        "generation_timeout",
        "not_found",
        "method_not_allowed",
        "not_acceptable",
    }
)
STATUS_OF_CODE = {
    "invalid_image": 400,
    "invalid_base64": 400,
    "missing_image": 400,
    "image_too_small": 400,
    "aspect_ratio_too_large": 400,
    "malformed_json": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "image_url_disabled": 403,
    "image_url_refused": 403,
    "upload_timeout": 408,
    "payload_too_large": 413,
    "image_too_many_pixels": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "invalid_policy": 422,
    "image_fetch_failed": 422,
    "overloaded": 429,
    "backend_unavailable": 503,
    "too_many_connections": 503,
    "generation_timeout": 504,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
}

# What must never appear in an error body: tracebacks, source paths, interpreter internals.
_LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|/work/|/root/|/home/|/tmp/|Exception:|Error\(|"
    r"<module>|line \d+, in "
)

# Tally of every response the fuzzers saw, written to BOXGUARD_FUZZ_REPORT (JSON) at exit.
TALLY: Counter[str] = Counter()


def examples(default: int) -> int:
    """Hypothesis max_examples: BOXGUARD_FUZZ_EXAMPLES for the dedicated run, else `default`."""
    value = os.environ.get("BOXGUARD_FUZZ_EXAMPLES")
    return int(value) if value else default


def assert_clean_text(text: str, secrets: tuple[str, ...] = ()) -> None:
    """No stack trace, file path or secret in a body or log line."""
    match = _LEAKS.search(text)
    assert match is None, f"leak {match.group(0)!r} in {text[:500]!r}"
    for secret in secrets:
        assert secret not in text, f"secret leaked in {text[:500]!r}"


def assert_problem(
    response: httpx.Response,
    status: int | None = None,
    code: str | None = None,
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A well-formed RFC 9457 problem with a known, status-consistent code; returns the body."""
    assert response.headers.get("content-type", "").startswith("application/problem+json"), (
        response.status_code,
        response.headers.get("content-type"),
        response.text[:300],
    )
    body = response.json()
    assert body["status"] == response.status_code
    assert body["code"] in KNOWN_CODES, body
    assert STATUS_OF_CODE[body["code"]] == response.status_code, body
    assert isinstance(body["title"], str) and body["title"]
    assert body.get("request_id") and body["request_id"] == response.headers.get("x-request-id")
    if status is not None:
        assert response.status_code == status, body
    if code is not None:
        assert body["code"] == code, body
    assert_clean_text(response.text, secrets)
    if response.status_code in (429, 503):
        assert response.headers.get("retry-after", "").isdigit(), response.headers
    return body


def assert_fuzz_answer(response: httpx.Response, image_size: tuple[int, int] | None = None) -> None:
    """The fuzz contract: 200 with in-image boxes, or a problem+json 4xx; never a 5xx."""
    TALLY["requests"] += 1
    TALLY[f"status_{response.status_code}"] += 1
    if TALLY["requests"] % 250 == 0:
        write_tally()
    assert response.status_code < 500, response.text[:500]
    if response.status_code == 200:
        body = response.json()
        assert body["status"] in ("accepted", "abstained")
        width, height = body["image"]["width"], body["image"]["height"]
        if image_size is not None:
            assert (width, height) == image_size
        for det in body["detections"] + body["candidates"]:
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (det, width, height)
        return
    problem = assert_problem(response)
    TALLY[f"code_{problem['code']}"] += 1
    assert 400 <= response.status_code < 500


def write_tally() -> None:
    path = os.environ.get("BOXGUARD_FUZZ_REPORT")
    if path and TALLY:
        with open(path, "w") as fh:
            json.dump(dict(sorted(TALLY.items())), fh, indent=2)
