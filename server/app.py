"""The FastAPI app: POST /ground, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from boxguard.guards import embed
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from .backends import Backend, create_backend
from .docs import install_docs
from .errors import (
    BackendUnavailable,
    BadRequest,
    BoxguardServerError,
    ClientDisconnected,
    ImageUrlDisabled,
    MalformedJSON,
    MissingImage,
    UnsupportedMediaType,
    ValidationFailed,
    validation_errors,
)
from .grounding import GroundingService
from .imaging import decode_base64_image, open_image
from .metrics import get_metrics
from .model_source import resolve_model_dir
from .models import adapter_for
from .playground import router as playground_router
from .problems import PROBLEM_JSON, BodyLimitMiddleware, install_problem_handlers
from .schema import GroundRequest, GroundResponse, Health, Problem
from .security import ApiKeyMiddleware, RequestIdMiddleware
from .settings import Settings

log = logging.getLogger("boxguard.server")

_PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for status, text in {
        400: "Bad input (image, base64, expression)",
        401: "Missing or wrong API key",
        403: "image_url disabled or refused",
        408: "The body did not arrive in time",
        413: "Body or image too large",
        415: "Unsupported media type",
        422: "Schema or policy validation failed",
        429: "Queue full, also during the checks; honour Retry-After",
        503: "Backend unavailable or failed, also during the checks; honour Retry-After",
        504: "The request deadline (generation and checks together) passed",
    }.items()
}

DISCONNECT_POLL_S = 0.25

_FORM_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the app; the lifespan starts the backend (built from settings unless given).

    Example:
        >>> app = create_app(Settings(model="/models/Qwen2.5-VL-7B-Instruct"))  # doctest: +SKIP
    """
    settings = settings or Settings()
    metrics = get_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_dir, model_name = resolve_model_dir(settings.model)
        adapter = adapter_for(
            model_dir, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
        )
        engine = backend or create_backend(settings, model_dir, adapter)
        await engine.start()
        service = GroundingService(settings, adapter, engine, metrics)
        if service.policy.label_embeddings:
            # Load the optional embedding model now rather than on some request's clock.
            await asyncio.to_thread(embed.warmup)
        service.model_name = settings.model_name or model_name
        app.state.backend = engine
        app.state.service = service
        metrics.backend_ready.set(1)
        supervisor = asyncio.create_task(_supervise(engine, settings))
        log.info("boxguard ready: model=%s backend=%s", model_dir, engine.name)
        try:
            yield
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
            metrics.backend_ready.set(0)
            await engine.stop()

    app = FastAPI(
        title="boxguard",
        version="0.1.0",
        summary="Grounding for Qwen-VL models that would rather abstain than hallucinate.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    install_problem_handlers(app)
    # Added last = outermost: request id, then CORS, then keys, then the body limit.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        chunk_timeout_s=settings.upload_timeout_s,
    )
    app.add_middleware(
        ApiKeyMiddleware, keys=settings.api_keys, metrics_require_key=settings.metrics_require_key
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
        )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(playground_router)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz(request: Request) -> Health:
        """Liveness: the process answers; names the model and backend as /readyz does, cheaply."""
        return Health(status="ok", **_serving(request))

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["ops"],
        responses={503: {"model": Health, "description": "Backend not ready"}},
    )
    async def readyz(request: Request) -> Any:
        """Readiness: 200 only when the backend can serve."""
        backend_ = getattr(request.app.state, "backend", None)
        if backend_ is None or not backend_.ready:
            return JSONResponse(Health(status="not_ready").model_dump(), status_code=503)
        return Health(status="ready", **_serving(request))

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics (boxguard_* and, with vLLM, vllm:*)."""
        backend_: Backend | None = getattr(request.app.state, "backend", None)
        if backend_ is not None:
            metrics.queue_depth.set(backend_.queue_depth)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/ground",
        response_model=GroundResponse,
        tags=["grounding"],
        responses=_PROBLEM_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/GroundRequest"}},
                    "multipart/form-data": {
                        "schema": {"$ref": "#/components/schemas/GroundRequestForm"}
                    },
                },
            }
        },
    )
    async def ground(request: Request) -> GroundResponse:
        """Ground a referring expression: verified boxes in original pixels, or an abstention."""
        started = time.perf_counter()
        metrics.in_flight.inc()
        outcome = "error"
        try:
            response = await _ground(request, settings)
            outcome = response.status
            return response
        except BoxguardServerError as exc:
            outcome = exc.code
            raise
        finally:
            metrics.in_flight.dec()
            metrics.requests.labels(outcome).inc()
            metrics.stage_seconds.labels("total").observe(time.perf_counter() - started)

    app.openapi_schema = None
    _register_form_schema(app)
    return app


def _serving(request: Request) -> dict[str, str | None]:
    """The model and backend names once the lifespan set them up (attributes only, no calls)."""
    service = getattr(request.app.state, "service", None)
    backend = getattr(request.app.state, "backend", None)
    return {
        "model": service.model_name if service is not None else None,
        "backend": backend.name if backend is not None else None,
    }


async def _ground(request: Request, settings: Settings) -> GroundResponse:
    """Parse the body (JSON or multipart), decode the image, run the service."""
    service: GroundingService | None = getattr(request.app.state, "service", None)
    if service is None or not request.app.state.backend.ready:
        raise BackendUnavailable(
            "the backend is not ready", headers={"Retry-After": str(settings.retry_after_s)}
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    req, image_bytes = await _parse_body(request)
    sources = (image_bytes is not None) + (req.image is not None) + (req.image_url is not None)
    if sources > 1:
        raise BadRequest("send the image once: a file part, or `image`, or `image_url`")
    if image_bytes is None:
        if req.image_url is not None:
            if not settings.image_url_enabled:
                raise ImageUrlDisabled("set BOXGUARD_IMAGE_URL_ENABLED=true to allow image_url")
            from .fetch import fetch_image

            image_bytes = await fetch_image(req.image_url, settings)
        elif req.image is not None:
            image_bytes = decode_base64_image(req.image)
        else:
            raise MissingImage("send `image` (base64 or data URL) or a multipart `image` file")
    image = await asyncio.to_thread(
        open_image,
        image_bytes,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
        max_aspect_ratio=settings.max_aspect_ratio,
    )
    timings["decode"] = round((time.perf_counter() - started) * 1000, 3)
    get_metrics().stage_seconds.labels("decode").observe(timings["decode"] / 1000)
    # One deadline around generation and every check; a client that goes away cancels it all.
    work = service.ground(image, req, request.state.request_id, timings)
    return await _unless_disconnected(request, service.within_deadline(work))


async def _unless_disconnected(request: Request, work: Awaitable[GroundResponse]) -> GroundResponse:
    """Run `work`, cancelling it (its generation and checks) if the client goes away.

    Only called once the body is read: polling for a disconnect consumes receive() messages.
    """
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            get_metrics().cancelled.labels("client_disconnect").inc()
            raise ClientDisconnected("the client disconnected")


async def _supervise(engine: Backend, settings: Settings) -> None:
    """Restart a backend that stopped being ready (engine death), then serve again."""
    metrics = get_metrics()
    while True:
        await asyncio.sleep(settings.backend_check_interval_s)
        if engine.ready:
            continue
        metrics.backend_ready.set(0)
        log.warning("backend %s is not ready; restarting it", engine.name)
        try:
            await engine.stop()
            await engine.start()
        except Exception:
            log.exception("backend restart failed; retrying")
            continue
        metrics.backend_restarts.inc()
        metrics.backend_ready.set(1)
        log.info("backend %s restarted", engine.name)


async def _parse_body(request: Request) -> tuple[GroundRequest, bytes | None]:
    """The validated request and, for multipart, the uploaded image bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise MalformedJSON("the body is not valid JSON (or nested too deeply)") from None
        return _validate(data), None
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=16)
        except BoxguardServerError:
            raise  # body limit or upload timeout, raised while the form was read
        except Exception:
            raise BadRequest("the multipart body could not be parsed") from None
        fields: dict[str, Any] = {}
        image_bytes: bytes | None = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "image":
                    raise ValidationFailed(f"unexpected file field {key!r}")
                image_bytes = await value.read()
            elif key in ("multiple", "think", "return_raw"):
                fields[key] = _FORM_BOOLS.get(value.strip().lower(), value)
            elif key == "policy":
                try:
                    fields[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise ValidationFailed("the policy field is not valid JSON") from None
            else:
                fields[key] = value
        return _validate(fields), image_bytes
    raise UnsupportedMediaType(f"content type {content_type or 'none'!r} is not accepted")


def _validate(data: Any) -> GroundRequest:
    """Validate against the wire schema; errors never echo the (possibly huge) input."""
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object")
    try:
        return GroundRequest.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "the request does not match the schema", validation_errors(exc.errors())
        ) from None


def _register_form_schema(app: FastAPI) -> None:
    """Add the multipart variant of GroundRequest to the OpenAPI components."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["GroundRequest"] = GroundRequest.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        form = json.loads(json.dumps(components["GroundRequest"]))
        form["title"] = "GroundRequestForm"
        form["properties"]["image"] = {"type": "string", "format": "binary"}
        form["properties"]["policy"] = {"type": "string", "description": "JSON object"}
        components["GroundRequestForm"] = form
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
