"""The FastAPI app: POST /ground, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from boxguard.guards import embed
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from .access_log import GroundAccountingMiddleware
from .backends import Backend, BackendError, create_backend
from .context import RequestContext
from .docs import install_docs
from .errors import (
    BackendUnavailable,
    BadRequest,
    BoxguardServerError,
    ClientDisconnected,
    MalformedJSON,
    UnsupportedMediaType,
    ValidationFailed,
    validation_errors,
)
from .grounding import GroundingService
from .metrics import get_metrics
from .model_source import model_for
from .openai_front import router as openai_front_router
from .playground import router as playground_router
from .policy_source import server_policy
from .problems import PROBLEM_JSON, BodyLimitMiddleware, install_problem_handlers
from .recording import start_recording
from .review import router as review_router
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

_FORM_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the app; the lifespan starts the backend (built from settings unless given).

    Example:
        >>> app = create_app(Settings(model="/models/Qwen2.5-VL-7B-Instruct"))  # doctest: +SKIP
    """
    settings = settings or Settings()
    app = FastAPI(
        title="boxguard",
        version="0.1.0",
        summary="Grounding for Qwen-VL models that would rather abstain than hallucinate.",
        lifespan=_lifespan(settings, backend),
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    install_problem_handlers(app)
    _add_middleware(app, settings)
    app.include_router(playground_router)
    app.include_router(openai_front_router)
    app.include_router(review_router)
    _add_ops_routes(app)
    _add_ground_route(app, settings)
    app.openapi_schema = None
    _register_form_schema(app)
    return app


def _lifespan(
    settings: Settings, backend: Backend | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the backend, warm it up and supervise it; stop it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = get_metrics()
        model_dir, model_name, adapter = model_for(settings)
        policy = server_policy(settings, model_dir, settings.model_name or model_name)
        engine = backend or create_backend(settings, model_dir, adapter)
        await engine.start()
        service = GroundingService(settings, adapter, engine, metrics, policy)
        service.recorder = app.state.recorder = await start_recording(settings, metrics)
        if policy.values.label_embeddings:
            # Load the optional embedding model now rather than on some request's clock.
            await asyncio.to_thread(embed.warmup)
        await service.warmup()
        service.warm = True
        freeze_startup_heap()
        # An upstream's model is known once connected (the only one it serves).
        model_name = getattr(engine, "served_model", None) or model_name
        service.model_name = settings.model_name or model_name
        app.state.backend = engine
        app.state.service = service
        metrics.backend_ready.set(1)
        supervisor = asyncio.create_task(_supervise(service, settings))
        log.info(
            "boxguard ready: model=%s backend=%s policy=%s",
            model_dir,
            engine.name,
            policy.file or "defaults",
        )
        try:
            yield
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
            metrics.backend_ready.set(0)
            gc.unfreeze()  # what the engine leaves behind is collectable again
            await engine.stop()
            if service.recorder is not None:
                await asyncio.to_thread(service.recorder.stop)

    return lifespan


def freeze_startup_heap() -> None:
    """Exempt everything alive once the backend is warm from garbage collection (`gc.freeze`).

    The engine client, model and libraries leave ~740k objects in the collector's reach; with
    them there, decoding the vLLM engine's outputs took 5.6x the CPU it takes in vLLM's own
    server, which freezes its heap after startup the same way. Undone (`gc.unfreeze`) before the
    backend stops or restarts, so what it leaves behind can be collected; after a restart the
    full collection here holds the loop once (/healthz waits that long, /readyz is still 503).
    """
    gc.collect()
    gc.freeze()


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Added last = outermost: request id, accounting, CORS, keys, then the body limit."""
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
    app.add_middleware(GroundAccountingMiddleware)
    app.add_middleware(RequestIdMiddleware)


def _add_ops_routes(app: FastAPI) -> None:
    """/healthz, /readyz and /metrics (health also for HEAD: load balancers probe with it)."""

    @app.get("/healthz", response_model=Health, tags=["ops"])
    @app.head("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> Health:
        """Liveness: the process answers; names the model, backend and its state, cheaply."""
        return Health(status="ok", **_serving(request))

    @app.head("/readyz", include_in_schema=False)
    @app.get(
        "/readyz",
        response_model=Health,
        tags=["ops"],
        responses={503: {"model": Health, "description": "Backend not ready (state, reason)"}},
    )
    async def readyz(request: Request) -> Any:
        """Readiness: 200 only when the backend can serve; else its state and why."""
        serving = _serving(request)
        service = getattr(request.app.state, "service", None)
        if serving["backend_state"] != "ready" or service is None or not service.warm:
            body = Health(status="not_ready", **serving)
            return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
        return Health(status="ready", **serving)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics (boxguard_* and, with vLLM, vllm:*)."""
        backend_: Backend | None = getattr(request.app.state, "backend", None)
        if backend_ is not None:
            get_metrics().queue_depth.set(backend_.queue_depth)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _add_ground_route(app: FastAPI, settings: Settings) -> None:
    """POST /ground, JSON or multipart; its outcome is left for GroundAccountingMiddleware."""

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
        # GroundAccountingMiddleware counts and logs the request with these.
        request.state.outcome = "error"
        try:
            response = await _ground(request, settings)
            request.state.outcome = response.status
            request.state.reasons = list(response.reasons)
            return response
        except BoxguardServerError as exc:
            request.state.outcome = exc.code
            raise


def _serving(request: Request) -> dict[str, str | None]:
    """The model, backend and its state once the lifespan set them up (attributes only)."""
    service = getattr(request.app.state, "service", None)
    backend = getattr(request.app.state, "backend", None)
    health = backend.health if backend is not None else None
    return {
        "model": service.model_name if service is not None else None,
        "backend": backend.name if backend is not None else None,
        "backend_state": health.state if health is not None else "starting",
        "reason": health.reason if health is not None else None,
        "constraint": getattr(backend, "constraint_form", None),
    }


async def _ground(request: Request, settings: Settings) -> GroundResponse:
    """Read the body, then run the service under the request's context until the client leaves."""
    service: GroundingService | None = getattr(request.app.state, "service", None)
    if service is None or not request.app.state.backend.ready:
        raise BackendUnavailable(
            "the backend is not ready", headers={"Retry-After": str(settings.retry_after_s)}
        )
    req, upload = await _parse_body(request)
    ctx = RequestContext.begin(request.state.request_id, timeout_s=settings.request_timeout_s)
    return await _unless_disconnected(request, ctx, service.run(ctx, req, upload))


async def _unless_disconnected(
    request: Request, ctx: RequestContext, work: Awaitable[GroundResponse]
) -> GroundResponse:
    """Run `work`, cancelling it (its generation and checks) if the client goes away.

    A listener awaits the ASGI `http.disconnect` (as vLLM's `with_cancellation` does): no
    polling. Only called once the body is read, so receive() has nothing else to deliver.
    """
    task = asyncio.ensure_future(work)
    listener = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listener.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, listener, return_exceptions=True)
    if task.cancelled():
        ctx.cancel_cause = "client_disconnect"
        get_metrics().cancelled.labels("client_disconnect").inc()
        log.info("request %s: the client disconnected; its work was cancelled", ctx.id)
        raise ClientDisconnected("the client disconnected")
    return task.result()


async def _disconnect(request: Request) -> None:
    """Return when the client disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        continue


async def _supervise(service: GroundingService, settings: Settings) -> None:
    """Restart a backend that stopped being ready (engine death), warm it, then serve again."""
    metrics = get_metrics()
    engine = service.backend
    while True:
        await asyncio.sleep(settings.backend_check_interval_s)
        health = engine.health
        if health.ready:
            continue
        metrics.backend_ready.set(0)
        service.warm = False  # not ready again until the restarted engine is warmed up
        log.warning(
            "backend %s is %s (%s); restarting it", engine.name, health.state, health.reason
        )
        gc.unfreeze()  # the dead engine's objects may be freed; the new ones are frozen below
        try:
            await engine.stop()
            await engine.start()
            await service.warmup()
        except BackendError as exc:  # e.g. an upstream still unreachable: one line, no trace
            log.warning("backend restart failed: %s; retrying", exc)
            continue
        except Exception:
            log.exception("backend restart failed; retrying")
            continue
        freeze_startup_heap()
        metrics.backend_restarts.inc()
        metrics.backend_ready.set(1)
        service.warm = True
        log.info("backend %s restarted", engine.name)


async def _parse_body(request: Request) -> tuple[GroundRequest, bytes | None]:
    """The validated request and, for multipart, the uploaded image bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            raw = await request.body()
        except ClientDisconnect:
            raise ClientDisconnected("the client disconnected while sending the body") from None
        return _validate(_json_value(raw, "the body")), None
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=16)
        except BoxguardServerError:
            raise  # body limit or upload timeout, raised while the form was read
        except ClientDisconnect:
            raise ClientDisconnected("the client disconnected while sending the body") from None
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
                fields[key] = _json_value(value, "the policy field")
            else:
                fields[key] = value
        return _validate(fields), image_bytes
    raise UnsupportedMediaType(f"content type {content_type or 'none'!r} is not accepted")


def _json_value(raw: str | bytes, what: str) -> Any:
    """Parsed JSON; anything json.loads refuses (syntax, encoding, nesting, a 5,000-digit
    integer) is a 400 malformed_json, never a 500."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise MalformedJSON(
            f"{what} is not valid JSON (or nested too deeply, or a number too long)"
        ) from None


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
