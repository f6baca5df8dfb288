"""The frame the gateway sends upstream: lossless; BMP or PNG as the setting and upstream say."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from boxguard.server.backends.openai_translate import (
    body_bytes,
    image_data_url,
    image_format,
    is_loopback,
)
from boxguard.server.settings import Settings
from PIL import Image
from pydantic import ValidationError


@pytest.mark.parametrize("fmt", ["png", "bmp"])
def test_the_upstream_sees_the_exact_pixels(fmt: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    url = image_data_url(Image.fromarray(pixels, "RGB"), fmt)  # type: ignore[arg-type]
    head, payload = url.split(",", 1)
    assert head == f"data:image/{fmt};base64"
    # As vLLM's media loader opens it: PIL, restricted to an allowlist of formats.
    decoded = Image.open(io.BytesIO(base64.b64decode(payload)), formats=[fmt.upper()])
    assert decoded.mode == "RGB"
    assert np.array_equal(np.asarray(decoded), pixels)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.3.2.1", "[::1]"],
)
def test_auto_sends_bmp_to_a_vllm_upstream_on_this_machine(host: str) -> None:
    url = f"http://{host}:8000/v1"
    assert image_format("auto", url, "structured_outputs") == "bmp"
    assert image_format("auto", url, "guided_grammar") == "bmp"


@pytest.mark.parametrize(
    "url",
    [
        "http://vllm:8000/v1",
        "http://10.0.0.7:8000/v1",
        "https://api.example.com/v1",
        "http://[2001:db8::1]:8000/v1",
        "http://localhost.example.com/v1",
        "http://128.0.0.1/v1",
    ],
)
def test_auto_sends_png_over_a_network(url: str) -> None:
    assert image_format("auto", url, "structured_outputs") == "png"


def test_auto_keeps_png_for_response_format_upstreams() -> None:
    # OpenAI-style servers may take only PNG, JPEG, GIF and WebP, even on this machine.
    assert image_format("auto", "http://127.0.0.1:8000/v1", "response_format") == "png"


@pytest.mark.parametrize("form", ["structured_outputs", "guided_grammar", "response_format"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://vllm:8000/v1"])
def test_an_explicit_format_is_kept(form: str, url: str) -> None:
    assert image_format("png", url, form) == "png"  # type: ignore[arg-type]
    assert image_format("bmp", url, form) == "bmp"  # type: ignore[arg-type]


def test_is_loopback_is_false_for_an_empty_host() -> None:
    assert not is_loopback("")


def test_the_setting_takes_three_values(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().upstream_image_format == "auto"
    clean_env.setenv("BOXGUARD_UPSTREAM_IMAGE_FORMAT", "bmp")
    assert Settings().upstream_image_format == "bmp"
    with pytest.raises(ValidationError):
        Settings(upstream_image_format="jpeg")


@pytest.mark.parametrize("think", [False, True])
def test_the_body_bytes_are_the_body_as_json(think: bool) -> None:
    url = image_data_url(Image.new("RGB", (20, 10), (9, 99, 200)), "bmp")
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": 'a "b"'}]
    body = {
        "messages": [
            {"role": "system", "content": "sys \x00 é"},
            {"role": "user", "content": content},
            *([{"role": "assistant", "content": "<think>"}] if think else []),
        ],
        "structured_outputs": {"grammar": 'root ::= "yes" | "no"'},
        "n": 1,
    }
    assert json.loads(body_bytes(body, url)) == body
    assert body_bytes(body, url) == body_bytes(body, None)  # the same bytes as a plain dumps
    assert body["messages"][1]["content"][0]["image_url"]["url"] is url  # left as it was
