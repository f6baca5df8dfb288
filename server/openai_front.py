"""The OpenAI-compatible front: `POST /v1/chat/completions` and `GET /v1/models` over grounding.

A chat request with one image and a text is a grounding request: the expression is the last user
message's text, options ride in a top-level `boxguard` object (the `openai` package's
`extra_body={"boxguard": {...}}`): `multiple`, `think`, `output` (`point`: `point_2d` items),
`return_raw`, `policy`. It goes through
the same `GroundingService.run` as `POST /ground`.

The answer is a chat completion whose content is the verified boxes as Qwen writes them
(`[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]`), in original-image pixels, plus a `boxguard`
object (status, detections, reasons, checks). An abstention is `finish_reason: "content_filter"`
with `content: null` and the reasons in `message.refusal`: `[]` is what an accepted "nothing
matches" says, so an abstention must not read as it to a client that looks only at `content`.
Requests it cannot serve (no image, two images, tools, streaming, n > 1) get an OpenAI error
object, `{"error": {"message", "type", "param", "code"}}`.

Example:
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(
    ...     model="boxguard-demo-shapes", extra_body={"boxguard": {"multiple": True}},
    ...     messages=[{"role": "user", "content": [
    ...         {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
    ...         {"type": "text", "text": "the red circle"}]}])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from boxguard.guards.wire_errors import readable_errors
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import ClientDisconnect

from .context import RequestContext
from .errors import (
    BackendUnavailable,
    BoxguardServerError,
    ClientDisconnected,
    ValidationFailed,
)
from .metrics import get_metrics
from .schema import GroundRequest, GroundResponse

router = APIRouter(tags=["openai"])

# Fields a chat request may carry that would change what the client gets back; refused.
_REFUSED = {
    "stream": "streaming is not supported: grounding answers once, after the checks",
    "tools": "tools are not supported",
    "functions": "functions are not supported",
    "tool_choice": "tools are not supported",
}
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


class OpenAIError(Exception):
    """A request the front cannot serve, answered as an OpenAI error object."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The error as `{"error": {...}}` with its status."""
        kind = _ERROR_TYPES.get(self.status) or (
            "rate_limit_error"
            if self.status == 429
            else "server_error"
            if self.status >= 500
            else "invalid_request_error"
        )
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


class BoxguardOptions(BaseModel):
    """The `boxguard` object of a chat request (the openai package's `extra_body`)."""

    model_config = ConfigDict(extra="forbid")

    multiple: bool = False
    think: bool = False
    output: Literal["box", "point"] = "box"
    return_raw: bool = False
    policy: dict[str, Any] | None = None


def _parts(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """A message's content as parts (a string is one text part)."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise OpenAIError(
            400,
            "content must be a string or a list of parts",
            "invalid_content",
            param=f"messages[{index}].content",
        )
    return content


def _image_url(part: dict[str, Any], param: str) -> str:
    """The URL of an image_url part (object or plain string form)."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url.startswith(("data:", "http://", "https://")):
        raise OpenAIError(
            400, "image_url must be a data URL or an http(s) URL", "invalid_image_url", param=param
        )
    return url


def ground_request(body: dict[str, Any]) -> GroundRequest:
    """The grounding request a chat request asks for; OpenAIError when it cannot be served.

    Example:
        >>> ground_request({"model": "m", "messages": [{"role": "user", "content": [
        ...     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        ...     {"type": "text", "text": "the red circle"}]}]}).expression
        'the red circle'
    """
    for field, why in _REFUSED.items():
        if body.get(field):
            raise OpenAIError(400, why, f"{field}_unsupported", param=field)
    if body.get("n") not in (None, 1):
        raise OpenAIError(400, "n must be 1: there is one verdict", "n_unsupported", param="n")
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise OpenAIError(
            400,
            "messages must be a non-empty list of objects",
            "invalid_messages",
            param="messages",
        )
    images: list[str] = []
    expression = ""
    for i, message in enumerate(messages):
        texts = []
        for j, part in enumerate(_parts(message, i)):
            param = f"messages[{i}].content[{j}]"
            if part.get("type") == "image_url":
                images.append(_image_url(part, param))
            elif part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise OpenAIError(
                    400,
                    "only text and image_url parts are supported",
                    "unsupported_content",
                    param=param,
                )
        if message.get("role") == "user":
            expression = " ".join(t.strip() for t in texts if t.strip())
    if not images:
        raise OpenAIError(
            400, "send one image as an image_url part", "missing_image", param="messages"
        )
    if len(images) > 1:
        raise OpenAIError(
            400, f"send one image, not {len(images)}", "too_many_images", param="messages"
        )
    if not expression:
        raise OpenAIError(
            400,
            "the last user message needs a text: the expression to ground",
            "missing_expression",
            param="messages",
        )
    try:
        options = BoxguardOptions.model_validate(body.get("boxguard") or {})
        source = "image" if images[0].startswith("data:") else "image_url"
        return GroundRequest.model_validate(
            {source: images[0], "expression": expression, **options.model_dump()}
        )
    except ValidationError as exc:
        errors = readable_errors(exc.errors())
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise OpenAIError(400, detail or "invalid request", "validation_error") from None


def chat_completion(response: GroundResponse, model: str) -> dict[str, Any]:
    """The grounding verdict as a chat completion with a `boxguard` object."""
    accepted = response.status == "accepted"
    boxes = [
        {
            **({"bbox_2d": [round(v) for v in d.bbox]} if d.bbox is not None else {}),
            **({"point_2d": [round(v) for v in d.point]} if d.point is not None else {}),
            **({"label": d.label} if d.label else {}),
        }
        for d in response.detections
    ]
    message: dict[str, Any] = {"role": "assistant", "content": json.dumps(boxes)}
    if not accepted:
        message = {
            "role": "assistant",
            "content": None,
            "refusal": "boxguard abstained: " + ", ".join(response.reasons or ["unverified"]),
        }
    extra = response.model_dump(
        mode="json", include={"status", "detections", "reasons", "checks", "image", "raw_output"}
    )
    return {
        "id": f"chatcmpl-{response.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "stop" if accepted else "content_filter",
                "logprobs": None,
            }
        ],
        "boxguard": {k: v for k, v in extra.items() if v is not None},
    }


def _from_problem(exc: BoxguardServerError) -> OpenAIError:
    """A boxguard problem (bad image, full queue, deadline...) as an OpenAI error; a 422 is a
    400 with the field errors in the message, as OpenAI and vLLM answer invalid parameters."""
    message, status = exc.detail, exc.status_code
    if isinstance(exc, ValidationFailed):
        status = 400
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors)
        message = f"{message}: {fields}" if fields else message
    return OpenAIError(status, message, exc.code, headers=exc.headers)


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    """The one model this server grounds with, in OpenAI's list format."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return OpenAIError(503, "the backend is not ready", "backend_unavailable").response()
    card = {"id": service.model_name, "object": "model", "created": 0, "owned_by": "boxguard"}
    return JSONResponse({"object": "list", "data": [card]})


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> JSONResponse:
    """Ground the last user text in the one image: verified boxes, or an unmistakable refusal."""
    metrics = get_metrics()
    metrics.in_flight.inc()
    outcome = "error"
    try:
        answer = await _complete(request)
        outcome = answer["boxguard"]["status"]
        return JSONResponse(answer)
    except BoxguardServerError as exc:
        outcome = exc.code
        return _from_problem(exc).response()
    except OpenAIError as exc:
        outcome = exc.code
        return exc.response()
    finally:
        metrics.in_flight.dec()
        metrics.requests.labels(outcome).inc()


async def _complete(request: Request) -> dict[str, Any]:
    """Read and translate the body, run the grounding service, translate its verdict."""
    from .app import _unless_disconnected  # app imports this module's router

    settings = request.app.state.settings
    service = getattr(request.app.state, "service", None)
    if service is None or not request.app.state.backend.ready:
        raise BackendUnavailable(
            "the backend is not ready", headers={"Retry-After": str(settings.retry_after_s)}
        )
    try:
        body = json.loads(await request.body())
    except ClientDisconnect:
        raise ClientDisconnected("the client disconnected while sending the body") from None
    except (ValueError, RecursionError):
        raise OpenAIError(400, "the body is not valid JSON", "malformed_json") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the body must be a JSON object", "invalid_request")
    if body.get("model") != service.model_name:
        raise OpenAIError(
            404,
            f"the model {body.get('model')!r} does not exist; this server "
            f"serves {service.model_name!r}",
            "model_not_found",
            param="model",
        )
    req = ground_request(body)
    ctx = RequestContext.begin(request.state.request_id, timeout_s=settings.request_timeout_s)
    response = await _unless_disconnected(request, ctx, service.run(ctx, req))
    return chat_completion(response, service.model_name)
