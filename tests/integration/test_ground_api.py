"""POST /ground against a real uvicorn server with the built-in checkpoint."""

from __future__ import annotations

import json
import struct
import zlib

import httpx
import pytest
from boxguard.server.schema import GroundResponse
from support import b64, has_area, png_bytes

GOOD = {"expression": "the red circle"}


def _good_request(url: str) -> None:
    """A valid request after a bad one: the server keeps serving."""
    r = httpx.post(url + "/ground", json={"image": b64(png_bytes()), **GOOD}, timeout=60)
    assert r.status_code == 200, r.text
    GroundResponse.model_validate(r.json())


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height."""
    data = bytearray(png_bytes((8, 8)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_ground_json_answers_in_original_pixels(live_server: str) -> None:
    image = png_bytes((640, 480))
    r = httpx.post(
        live_server + "/ground",
        json={"image": b64(image), "expression": "the red circle", "return_raw": True},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = GroundResponse.model_validate(r.json())
    assert (body.image.width, body.image.height) == (640, 480)
    assert body.image.model_width % 28 == 0 and body.image.model_height % 28 == 0
    # An abstention names its failed fatal checks, an acceptance none.
    failed = {c.name for c in body.checks if c.fatal and not c.passed}
    assert set(body.reasons) == failed and body.accepted == (not failed)
    names = [c.name for c in body.checks]
    assert "format" in names and "geometry" in names
    assert body.raw_output is not None
    assert body.frame == "pixels"  # Verdict.frame reaches the wire (Qwen2.5-VL: model pixels)
    assert set(body.timings_ms) >= {"decode", "generate", "verify"}
    assert r.headers["x-request-id"] == body.id
    # The raw answer is in the model frame; candidates must be it mapped to original pixels,
    # less the boxes without area, which are no boxes: the geometry check names each of those.
    # The tiny random Qwen2.5-VL writes one zero-area box ([97, 97, 97, 97]), so here every raw
    # box is checked by the second rule; the mapping arithmetic is unit-tested per family in
    # tests/unit/server/models/test_adapters.py.
    raw = json.loads(body.raw_output)
    assert isinstance(raw, list) and raw, "the model wrote no box: nothing to check"
    boxes = [item for item in raw if has_area(item["bbox_2d"])]
    sx, sy = 640 / body.image.model_width, 480 / body.image.model_height
    for item, cand in zip(boxes, body.candidates, strict=True):
        x1, y1, x2, y2 = item["bbox_2d"]
        expected = sorted([x1 * sx, x2 * sx]), sorted([y1 * sy, y2 * sy])
        got = cand.bbox
        assert got[0] == pytest.approx(expected[0][0], abs=1.0)
        assert got[2] == pytest.approx(expected[0][1], abs=1.0)
        assert got[1] == pytest.approx(expected[1][0], abs=1.0)
        assert got[3] == pytest.approx(expected[1][1], abs=1.0)
    for det in body.detections + body.candidates:
        x1, y1, x2, y2 = det.bbox
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    geometry = next(c for c in body.checks if c.name == "geometry")
    dropped = [i for i, item in enumerate(raw) if not has_area(item["bbox_2d"])]
    for i in dropped:
        assert f"box {i}: degenerate" in geometry.detail, geometry.detail
    assert len(boxes) + len(dropped) == len(raw)


def test_ground_multipart_and_think(live_server: str) -> None:
    r = httpx.post(
        live_server + "/ground",
        files={"image": ("scene.png", png_bytes((300, 200)), "image/png")},
        data={"expression": "the blue star", "think": "true", "multiple": "false"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = GroundResponse.model_validate(r.json())
    assert (body.image.width, body.image.height) == (300, 200)
    assert body.think is not None


def test_ground_multiple(live_server: str) -> None:
    r = httpx.post(
        live_server + "/ground",
        json={"image": b64(png_bytes()), "expression": "every star", "multiple": True},
        timeout=60,
    )
    assert r.status_code == 200, r.text


def test_health_ready_metrics(live_server: str) -> None:
    assert httpx.get(live_server + "/healthz").json()["status"] == "ok"
    ready = httpx.get(live_server + "/readyz").json()
    assert ready["status"] == "ready" and ready["backend"] == "transformers"
    _good_request(live_server)
    text = httpx.get(live_server + "/metrics").text
    for name in (
        "boxguard_requests_total",
        'boxguard_stage_duration_seconds_bucket{le="0.005",stage="decode"}',
        'stage="generate"',
        'stage="verify"',
        "boxguard_requests_in_flight",
        "boxguard_queue_depth",
        "boxguard_generated_tokens_total",
        "boxguard_checks_total",
    ):
        assert name in text, name


def test_openapi_docs_served(live_server: str) -> None:
    schema = httpx.get(live_server + "/openapi.json").json()
    assert "/ground" in schema["paths"]
    content = schema["paths"]["/ground"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert httpx.get(live_server + "/docs").status_code == 200


BAD_INPUTS = [
    (
        "not_an_image",
        {"json": {"image": b64(b"hello, not an image"), **GOOD}},
        400,
        "invalid_image",
    ),
    ("truncated", {"json": {"image": b64(png_bytes((64, 64))[:60]), **GOOD}}, 400, "invalid_image"),
    ("one_pixel", {"json": {"image": b64(png_bytes((1, 1))), **GOOD}}, 400, "image_too_small"),
    (
        "aspect_ratio",
        {"json": {"image": b64(png_bytes((2010, 10))), **GOOD}},
        400,
        "aspect_ratio_too_large",
    ),
    (
        "pixel_bomb",
        {"json": {"image": b64(_bomb_png(60000, 60000)), **GOOD}},
        413,
        "image_too_many_pixels",
    ),
    (
        "body_too_large",
        {
            "content": b"{" + b" " * (3 * 1024 * 1024) + b"}",
            "headers": {"content-type": "application/json"},
        },
        413,
        "payload_too_large",
    ),
    (
        "malformed_json",
        {"content": b'{"image": ', "headers": {"content-type": "application/json"}},
        400,
        "malformed_json",
    ),
    (
        "empty_expression",
        {"json": {"image": b64(png_bytes()), "expression": ""}},
        422,
        "validation_error",
    ),
    (
        "long_expression",
        {"json": {"image": b64(png_bytes()), "expression": "x" * 1001}},
        422,
        "validation_error",
    ),
    (
        "wrong_type",
        {"json": {"image": b64(png_bytes()), "expression": 42}},
        422,
        "validation_error",
    ),
    (
        "wrong_bool",
        {"json": {"image": b64(png_bytes()), **GOOD, "multiple": "maybe"}},
        422,
        "validation_error",
    ),
    (
        "unknown_field",
        {"json": {"image": b64(png_bytes()), **GOOD, "colour": "red"}},
        422,
        "validation_error",
    ),
    ("missing_image", {"json": GOOD}, 400, "missing_image"),
    ("bad_base64", {"json": {"image": "!!!not base64!!!", **GOOD}}, 400, "invalid_base64"),
    ("not_an_object", {"json": ["image", "expression"]}, 422, "validation_error"),
    (
        "wrong_media_type",
        {"content": b"image=1", "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    (
        "image_url_disabled",
        {"json": {"image_url": "http://example.com/a.png", **GOOD}},
        403,
        "image_url_disabled",
    ),
    (  # the image twice is the same 400 in JSON and multipart, URLs enabled or not
        "json_image_and_image_url",
        {"json": {"image": b64(png_bytes()), "image_url": "http://example.com/a.png", **GOOD}},
        400,
        "bad_request",
    ),
    (
        "multipart_image_and_image_url",
        {
            "files": {"image": ("a.png", png_bytes(), "image/png")},
            "data": {"image_url": "http://example.com/a.png", **GOOD},
        },
        400,
        "bad_request",
    ),
    (
        "policy_out_of_range",
        {"json": {"image": b64(png_bytes()), **GOOD, "policy": {"min_confidence": 7}}},
        422,
        "invalid_policy",
    ),
    (
        "policy_unknown_field",
        {"json": {"image": b64(png_bytes()), **GOOD, "policy": {"nope": 1}}},
        422,
        "invalid_policy",
    ),
    (
        "multipart_missing_expression",
        {"files": {"image": ("a.png", png_bytes(), "image/png")}},
        422,
        "validation_error",
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "code"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_a_problem_and_server_keeps_serving(
    live_server: str, name: str, kwargs: dict, status: int, code: str
) -> None:
    r = httpx.post(live_server + "/ground", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["title"]
    assert "Traceback" not in r.text
    assert problem.get("request_id") == r.headers["x-request-id"]
    _good_request(live_server)


def test_unknown_route_is_a_problem(live_server: str) -> None:
    r = httpx.get(live_server + "/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"


def test_policy_override_is_applied_and_abstentions_are_counted(live_server: str) -> None:
    body = {"image": b64(png_bytes()), **GOOD, "policy": {"fatal": ["format"]}}
    r = httpx.post(live_server + "/ground", json=body, timeout=60)
    assert r.status_code == 200, r.text
    fatal = {c["name"]: c["fatal"] for c in r.json()["checks"]}
    assert fatal["format"] is True
    assert all(not v for name, v in fatal.items() if name != "format")
    text = httpx.get(live_server + "/metrics").text
    assert "boxguard_abstentions_total" in text
    assert "boxguard_detection_confidence_bucket" in text
