"""Schemathesis against the live OpenAPI schema of a real server on loopback.

CI runs a small sample (100 examples per operation); the dedicated run sets
BOXGUARD_FUZZ_EXAMPLES (e.g. 3000) and BOXGUARD_FUZZ_REPORT (a JSON tally of every answer).
The contract: no 5xx, the server never dies, every rejection is a problem+json 4xx whose `code`
is one of the documented stable codes.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from rel_support import TALLY, assert_fuzz_answer, assert_problem, examples

schemathesis = pytest.importorskip("schemathesis")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def api_schema(fuzz_server: str) -> Any:
    """The schema the server publishes, loaded over HTTP from the live server."""
    return schemathesis.openapi.from_url(fuzz_server + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _as_httpx(response: Any) -> httpx.Response:
    headers = [(k, v) for k, values in response.headers.items() for v in values]
    return httpx.Response(response.status_code, headers=headers, content=response.content)


@schema.parametrize()
@settings(
    max_examples=examples(100),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    database=None,
)
def test_openapi_fuzz_never_5xx(case: Any, fuzz_server: str) -> None:
    response = _as_httpx(case.call(timeout=120))
    TALLY["schemathesis"] += 1
    if case.path == "/ground":
        assert_fuzz_answer(response)
    elif case.path == "/v1/chat/completions" and response.status_code != 405:
        # The OpenAI front answers OpenAI error objects (a wrong method is the app's 405 problem).
        assert response.status_code < 500, response.text[:300]
        assert response.status_code == 200 or "error" in response.json(), response.text[:300]
    else:
        assert response.status_code in (200, 400, 404, 405, 406, 415, 422), response.text[:300]
        if response.status_code >= 400:
            assert_problem(response)
        if response.status_code == 400:  # only a body that is not JSON, with the stable code
            assert response.json()["code"] == "malformed_json", response.text[:300]
    assert httpx.get(fuzz_server + "/healthz", timeout=10).status_code == 200


def test_openapi_documents_the_403_it_answers(api_schema: Any) -> None:
    from schemathesis.specs.openapi.checks import status_code_conformance

    case = api_schema["/ground"]["POST"].Case(
        body={"image_url": "http://example.com/a.png", "expression": "the cat"},
        media_type="application/json",
    )
    response = case.call(timeout=60)
    assert response.status_code == 403
    case.validate_response(response, checks=[status_code_conformance])


RAW_BODIES: list[tuple[str, bytes, int, str]] = [
    ("application/json", b"{", 400, "malformed_json"),
    ("application/json", b"\xff\xfe\x00", 400, "malformed_json"),
    ("application/json", b"[]", 422, "validation_error"),
    ("application/json", b"null", 422, "validation_error"),
    ("application/json", b'"x"', 422, "validation_error"),
    ("application/json", b'{"expression": "x"}', 400, "missing_image"),
    ("application/json", b'{"image": "", "expression": "x"}', 400, "invalid_base64"),
    ("application/json", b'{"image": "%%%", "expression": "x"}', 400, "invalid_base64"),
    ("application/json", b'{"image": "AAAA", "expression": "x"}', 400, "invalid_image"),
    ("application/json", b'{"image": "AAAA", "expression": ""}', 422, "validation_error"),
    (
        "application/json",
        b'{"image": "AAAA", "expression": "x", "zzz": 1}',
        422,
        "validation_error",
    ),
    ("application/json", b'{"image": 5, "expression": "x"}', 422, "validation_error"),
    (
        "application/json",
        b'{"image": "AAAA", "expression": "x", "policy": 3}',
        422,
        "validation_error",
    ),
    (
        "application/json",
        b'{"image_url": "http://x/", "expression": "x"}',
        403,
        "image_url_disabled",
    ),
    (
        "application/json",
        b'{"image": "AAAA", "expression": "' + b"a" * 10_000 + b'"}',
        422,
        "validation_error",
    ),
    ("text/plain", b"hello", 415, "unsupported_media_type"),
    ("", b"hello", 415, "unsupported_media_type"),
    (
        "application/x-www-form-urlencoded",
        b"image=AAAA&expression=x",
        415,
        "unsupported_media_type",
    ),
    ("multipart/form-data", b"garbage", 400, "bad_request"),
    ("multipart/form-data; boundary=zz", b"--zz\r\ngarbage", 422, "validation_error"),
]


@pytest.mark.parametrize(
    ("ctype", "body", "status", "code"),
    RAW_BODIES,
    ids=[f"{i}-{code}" for i, (_, _, _, code) in enumerate(RAW_BODIES)],
)
def test_adversarial_bodies_get_stable_problems(
    fuzz_server: str, ctype: str, body: bytes, status: int, code: str
) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = httpx.post(fuzz_server + "/ground", content=body, headers=headers, timeout=60)
    TALLY["raw_bodies"] += 1
    assert_problem(r, status, code)
    # Validation errors never echo the (possibly huge) input back.
    assert len(r.content) < 4096


NESTED_JSON = [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-arrays"),
    pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, id="nested-objects"),
]


@pytest.mark.parametrize("body", NESTED_JSON)
def test_deeply_nested_json_is_a_400(fuzz_server: str, body: bytes) -> None:
    r = httpx.post(
        fuzz_server + "/ground",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_problem(r, 400, "malformed_json")


def test_unknown_paths_and_methods_are_problems(fuzz_server: str) -> None:
    assert_problem(httpx.get(fuzz_server + "/nope", timeout=10), 404, "not_found")
    assert_problem(httpx.get(fuzz_server + "/ground", timeout=10), 405, "method_not_allowed")
    assert_problem(httpx.delete(fuzz_server + "/healthz", timeout=10), 405, "method_not_allowed")
