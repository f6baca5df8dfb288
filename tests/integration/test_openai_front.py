"""boxguard's own OpenAI front, driven by the official `openai` package (sync and async).

boxguard runs as a gateway in front of the fake upstream, so its answers are known: one box,
accepted; with the visual check and P(yes) = 0.2, an abstention. Each request the front cannot
serve is an OpenAI error object the package raises as its own exception, with a stable code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from boxguard.server.app import create_app
from boxguard.server.serve import serve_in_thread
from fake_upstream import MODEL, Upstream, gateway_settings, running_upstream, wait_ready
from support import b64, png_bytes

IMAGE_URL = "data:image/png;base64," + b64(png_bytes((320, 240), "white"))


def _messages(*images: str, text: str | None = "the red circle") -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in images]
    if text is not None:
        content.append({"type": "text", "text": text})
    return [{"role": "system", "content": "ignored"}, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def state() -> Upstream:
    return Upstream()


@pytest.fixture(scope="module")
def base_url(state: Upstream) -> Iterator[str]:
    with (
        running_upstream(state) as upstream_url,
        serve_in_thread(create_app(gateway_settings(upstream_url))) as url,
    ):
        yield url + "/v1"


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        yield client


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_a_chat_completion_is_the_verified_boxes(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=_messages(IMAGE_URL))
    (choice,) = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.refusal is None
    (box,) = json.loads(choice.message.content or "")
    assert box == {"bbox_2d": [10, 19, 62, 76], "label": "red circle"}  # original pixels
    extra = completion.model_extra or {}
    assert extra["boxguard"]["status"] == "accepted"
    assert extra["boxguard"]["detections"][0]["bbox"] == pytest.approx(
        [10.39, 19.05, 62.34, 76.19], abs=0.01
    )
    assert {c["name"] for c in extra["boxguard"]["checks"]} >= {"confidence", "geometry"}


def test_extra_body_options_reach_the_service(client: openai.OpenAI, state: Upstream) -> None:
    state.bodies.clear()
    completion = client.chat.completions.create(
        model=MODEL,
        messages=_messages(IMAGE_URL, text="every red circle"),
        extra_body={
            "boxguard": {"multiple": True, "return_raw": True, "policy": {"self_consistency_k": 2}}
        },
    )
    extra = completion.model_extra or {}
    assert extra["boxguard"]["raw_output"].startswith('[{"bbox_2d"')
    assert "every object that matches" in state.bodies[0]["messages"][1]["content"][1]["text"]
    assert any(b.get("n") == 2 for b in state.bodies)


def test_an_abstention_is_unmistakable_in_standard_fields(
    client: openai.OpenAI, state: Upstream
) -> None:
    state.p_yes = 0.2
    try:
        completion = client.chat.completions.create(
            model=MODEL,
            messages=_messages(IMAGE_URL),
            extra_body={"boxguard": {"policy": {"visual_check": True}}},
        )
    finally:
        state.p_yes = 0.9
    (choice,) = completion.choices
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None  # never "[]", which an accepted "nothing there" says
    assert choice.message.refusal == "boxguard abstained: visual_check"
    assert (completion.model_extra or {})["boxguard"]["reasons"] == ["visual_check"]


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"messages": _messages(text="the red circle")}, openai.BadRequestError, "missing_image"),
        ({"messages": _messages(IMAGE_URL, IMAGE_URL)}, openai.BadRequestError, "too_many_images"),
        (
            {"messages": _messages(IMAGE_URL, text=None)},
            openai.BadRequestError,
            "missing_expression",
        ),
        ({"stream": True}, openai.BadRequestError, "stream_unsupported"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            openai.BadRequestError,
            "tools_unsupported",
        ),
        ({"n": 2}, openai.BadRequestError, "n_unsupported"),
        ({"model": "gpt-4o"}, openai.NotFoundError, "model_not_found"),
        (
            {"messages": _messages("https://example.com/a.png")},
            openai.PermissionDeniedError,
            "image_url_disabled",
        ),
        (
            {"extra_body": {"boxguard": {"policy": {"min_confidence": 7}}}},
            openai.BadRequestError,
            "invalid_policy",
        ),
    ],
)
def test_requests_it_cannot_serve_are_openai_errors(
    client: openai.OpenAI, kwargs: dict[str, Any], error: type[Exception], code: str
) -> None:
    request = {"model": MODEL, "messages": _messages(IMAGE_URL), **kwargs}
    with pytest.raises(error) as caught:
        client.chat.completions.create(**request)
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert caught.value.body["message"]  # type: ignore[attr-defined]


def test_upstream_faults_are_openai_errors_never_refusals(
    client: openai.OpenAI, state: Upstream, base_url: str
) -> None:
    for mode, error, code in [
        ("429", openai.RateLimitError, "overloaded"),
        ("garbage", openai.APIStatusError, "upstream_error"),
        ("500", openai.InternalServerError, "backend_unavailable"),
    ]:
        state.mode = mode
        try:
            with pytest.raises(error) as caught:
                client.chat.completions.create(model=MODEL, messages=_messages(IMAGE_URL))
        finally:
            state.mode = "ok"
        assert caught.value.code == code, mode  # type: ignore[attr-defined]
    # The upstream's /health failed while it was "500": the supervisor may be restarting it.
    wait_ready(base_url.removesuffix("/v1"))


def test_malformed_json_is_an_openai_error(base_url: str) -> None:
    response = httpx.post(
        base_url + "/chat/completions",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_the_async_client_gets_the_same_answers(base_url: str, state: Upstream) -> None:
    async def main() -> tuple[list[Any], Exception]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="-", max_retries=0) as client:
            answers = await asyncio.gather(
                *(
                    client.chat.completions.create(model=MODEL, messages=_messages(IMAGE_URL))
                    for _ in range(4)
                )
            )
            try:
                await client.chat.completions.create(model=MODEL, messages=_messages())
            except openai.BadRequestError as exc:
                return list(answers), exc
            raise AssertionError("no image was accepted")

    answers, refused = asyncio.run(main())
    assert {a.choices[0].message.content for a in answers} == {
        '[{"bbox_2d": [10, 19, 62, 76], "label": "red circle"}]'
    }
    assert refused.code == "missing_image"  # type: ignore[attr-defined]


def test_points_are_point_2d_items(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=_messages(IMAGE_URL, text="the red circle's centre"),
        extra_body={"boxguard": {"output": "point"}},
    )
    extra = completion.model_extra or {}
    assert extra["boxguard"]["status"] == "accepted", extra["boxguard"]
    (item,) = json.loads(completion.choices[0].message.content or "")
    assert set(item) == {"point_2d", "label"} and len(item["point_2d"]) == 2


def test_the_api_key_is_the_openai_packages_bearer(state: Upstream) -> None:
    with (
        running_upstream(state) as upstream_url,
        serve_in_thread(create_app(gateway_settings(upstream_url, api_keys=["k1"]))) as url,
    ):
        with openai.OpenAI(base_url=url + "/v1", api_key="k1", max_retries=0) as client:
            completion = client.chat.completions.create(model=MODEL, messages=_messages(IMAGE_URL))
            assert completion.choices[0].finish_reason == "stop"
        with (
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0) as client,
            pytest.raises(openai.AuthenticationError) as caught,
        ):
            client.models.list()
    assert caught.value.code == "unauthorized"  # type: ignore[attr-defined]
