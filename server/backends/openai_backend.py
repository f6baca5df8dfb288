"""The openai backend: boxguard as a client of an upstream OpenAI-compatible VLM server.

No weights and no torch here: the adapter comes from `--family` and the pixel bounds, the image
is resized to the model frame by the service and sent as a lossless data URL (BMP or PNG as
`--upstream-image-format` and the upstream say: `openai_translate.image_format`), the constraint as
the grammar the in-process backends compile (see `openai_translate` for the weaker forms).

Faults are never verdicts: an unreachable upstream is BackendDead (503, and health turns dead
so the supervisor reconnects), a refused request BackendError (503), a 429 QueueFull (429), an
answer that is not a chat completion UpstreamInvalid (502). A caller's cancellation (the
request deadline, a client that left) closes the upstream request's connection, which vLLM
takes as an abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import httpx

from .base import (
    NOT_STARTED,
    BackendDead,
    BackendError,
    BackendHealth,
    Completion,
    Generation,
    GenerationRequest,
    QueueFull,
    UpstreamInvalid,
)
from .decoding import join_think, replicate
from .openai_translate import (
    CONSTRAINT_FORMS,
    ConstraintForm,
    ImageFormat,
    answer_body,
    body_bytes,
    continuation_body,
    image_data_url,
    image_format,
    parse_chat_completion,
    pick_model,
    probe_body,
    probe_result,
    served_models,
    think_body,
    yes_no_completion,
)

if TYPE_CHECKING:
    from ..models import ModelAdapter
    from ..settings import Settings

log = logging.getLogger("boxguard.openai")
# httpx logs every request at INFO: one line per upstream call and health poll is noise here.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONNECT_TIMEOUT_S = 5.0
JSON_TYPE = {"Content-Type": "application/json"}


def upstream_headers(api_key: str | None) -> dict[str, str]:
    """The Authorization header for the upstream, if it needs a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class OpenAIBackend:
    """Backend over an upstream `/v1/chat/completions`; one pooled httpx client per start."""

    name = "openai"

    def __init__(self, settings: Settings, model_dir: str, adapter: ModelAdapter) -> None:
        if not settings.upstream_url:
            raise ValueError("--backend openai needs --upstream-url")
        self.settings = settings
        self.base_url = settings.upstream_url.rstrip("/")
        self.adapter = adapter
        self.served_model: str | None = settings.upstream_model
        # How answers are constrained (for /healthz); None until start has probed it.
        self.constraint_form: ConstraintForm | None = None
        self.renormalized = False  # the upstream's logprobs are after its grammar mask
        self.image_format: ImageFormat = "png"  # decided with the constraint form at start
        self.takes_n = True  # n > 1 in one call; else samples are n calls
        self.client: httpx.AsyncClient | None = None
        self._dead_reason: str | None = None
        self._inflight = 0
        self._poll: asyncio.Task[None] | None = None

    @property
    def health(self) -> BackendHealth:
        """dead while the upstream is unreachable (why), stopped without a client, else ready."""
        if self._dead_reason is not None:
            return BackendHealth("dead", self._dead_reason)
        if self.client is None:
            return BackendHealth("stopped")
        return BackendHealth("ready")

    @property
    def ready(self) -> bool:
        """True once connected and the upstream answers its health check."""
        return self.health.ready

    @property
    def queue_depth(self) -> int:
        """Requests waiting for one of the pool's connections."""
        return max(0, self._inflight - self.settings.upstream_max_connections)

    async def start(self) -> None:
        """Connect: the model is served, which constraint form it enforces; then poll health."""
        if self.client is not None:
            return
        limit = self.settings.upstream_max_connections
        client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=upstream_headers(self.settings.upstream_api_key),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            timeout=httpx.Timeout(self.settings.request_timeout_s, connect=CONNECT_TIMEOUT_S),
        )
        try:
            models = served_models(await self._get_json(client, "/models"))
            self.served_model = pick_model(models, self.settings.upstream_model)
            self.constraint_form, self.renormalized = await self._probe(client, self.served_model)
            self.image_format = image_format(
                self.settings.upstream_image_format, self.base_url, self.constraint_form
            )
            self.takes_n = await self._takes_n(client, self.served_model)
        except (httpx.HTTPError, ValueError, BackendError) as exc:
            await client.aclose()
            self._dead_reason = f"upstream {self.base_url}: {exc}"
            raise BackendDead(self._dead_reason) from None
        self.client, self._dead_reason = client, None
        self._poll = asyncio.create_task(self._poll_health(client))
        log.info(
            "upstream %s model %s: constraint %s, images as %s, logprobs %s",
            self.base_url,
            self.served_model,
            self.constraint_form,
            self.image_format.upper(),
            "after the grammar mask" if self.renormalized else "before the grammar mask",
        )
        if not self.renormalized:
            log.warning(
                "the upstream reports logprobs before its grammar mask: answer confidences are "
                "the unconstrained model's (lower); start vLLM with --logprobs-mode "
                "processed_logprobs for the in-process backends' confidences"
            )

    async def stop(self) -> None:
        """Close the pool: in-flight requests fail with BackendDead (503); a dead upstream's
        reason stays until a start connects again."""
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
            self._poll = None
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def _probe(self, client: httpx.AsyncClient, model: str) -> tuple[ConstraintForm, bool]:
        """The strongest constraint form the upstream enforces, and its logprob mode."""
        tried = []
        for form in CONSTRAINT_FORMS:
            response = await client.post("/chat/completions", json=probe_body(model, form))
            if response.status_code == 200:
                enforced, renormalized = probe_result(_json(response))
                if enforced:
                    return form, renormalized
            tried.append(f"{form} ({response.status_code})")
        raise BackendError(f"it enforces no constraint form boxguard knows: {', '.join(tried)}")

    @staticmethod
    async def _takes_n(client: httpx.AsyncClient, model: str) -> bool:
        """Whether the upstream answers `n: 2` with two choices (OpenAI's API and vLLM do)."""
        body = {**probe_body(model, "response_format"), "n": 2, "temperature": 1.0}
        body.pop("response_format")
        response = await client.post("/chat/completions", json={**body, "max_tokens": 1})
        if response.status_code != 200:
            return False
        data = _json(response)
        return isinstance(data, dict) and len(data.get("choices") or ()) == 2

    async def _poll_health(self, client: httpx.AsyncClient) -> None:
        """Follow the upstream's /health (else /v1/models); unreachable = dead until restarted."""
        root = self.base_url.removesuffix("/v1")
        while self.client is client:
            await asyncio.sleep(self.settings.backend_check_interval_s)
            try:
                response = await client.get(root + "/health")
                if response.status_code == 404:
                    response = await client.get("/models")
                if response.status_code >= 500:
                    raise httpx.HTTPStatusError(
                        "unhealthy", request=response.request, response=response
                    )
            except httpx.HTTPError as exc:
                self._dead_reason = f"upstream {self.base_url} is unhealthy: {_describe(exc)}"
                return

    async def generate(self, request: GenerationRequest) -> Generation:
        """`request.n` completions: `n` in one call, think as the two calls other backends make."""
        client = self.client
        if client is None:
            raise BackendDead(self._dead_reason or NOT_STARTED)
        if self._dead_reason is not None:
            raise BackendDead(f"{self._dead_reason}; reconnecting")
        if self._inflight >= self.settings.upstream_max_connections + self.settings.queue_size:
            raise QueueFull(f"{self._inflight} upstream requests in flight; try again later")
        self._inflight += 1
        try:
            image_url = None
            if request.image is not None:  # encoding off the event loop
                image_url = await asyncio.to_thread(
                    image_data_url, request.image, self.image_format
                )
            if request.constraint.think:
                completions, prompt_tokens = await self._think(client, request, image_url)
            else:
                completions, prompt_tokens = await self._answer(client, request, image_url)
        finally:
            self._inflight -= 1
        return Generation(replicate(completions, max(1, request.n)), prompt_tokens)

    def _kwargs(self, image_url: str | None) -> dict[str, Any]:
        """What every body builder needs from this backend."""
        return {
            "model": self.served_model or "",
            "system_prompt": self.adapter.system_prompt,
            "image_url": image_url,
        }

    async def _answer(
        self, client: httpx.AsyncClient, request: GenerationRequest, image_url: str | None
    ) -> tuple[list[Completion], int]:
        """One call: the answer under the constraint (its n samples), or the yes/no question."""
        form = self.constraint_form or "structured_outputs"
        body = answer_body(request, form=form, **self._kwargs(image_url))
        if body["n"] > 1 and not self.takes_n:  # k calls, seeded as vLLM seeds n's children
            seed = request.seed or 0
            calls = [
                self._post(client, {**body, "n": 1, "seed": seed + i}, image_url)
                for i in range(body["n"])
            ]
            answers = [parse_chat_completion(data) for data in await asyncio.gather(*calls)]
            return [c for completions, _ in answers for c in completions], answers[0][1]
        data = await self._post(client, body, image_url)
        if request.constraint.choices:
            return [yes_no_completion(data)], parse_chat_completion(data)[1]
        return parse_chat_completion(data)

    async def _think(
        self, client: httpx.AsyncClient, request: GenerationRequest, image_url: str | None
    ) -> tuple[list[Completion], int]:
        """Phase 1: the free traces; phase 2: each trace's answer under the constraint."""
        kwargs = self._kwargs(image_url)
        thinks, prompt_tokens = parse_chat_completion(
            await self._post(client, think_body(request, **kwargs), image_url)
        )
        form = self.constraint_form or "structured_outputs"
        answers = await asyncio.gather(
            *(
                self._post(
                    client, continuation_body(request, t.text, i, form=form, **kwargs), image_url
                )
                for i, t in enumerate(thinks)
            )
        )
        completions = [
            join_think(t, parse_chat_completion(a)[0][0])
            for t, a in zip(thinks, answers, strict=True)
        ]
        return completions, prompt_tokens

    async def _post(
        self, client: httpx.AsyncClient, body: dict[str, Any], image_url: str | None
    ) -> Any:
        """POST a chat completion (`image_url`: the one in its messages, if any); every failure
        is a BackendError of the right kind."""
        try:
            response = await client.post(
                "/chat/completions", content=body_bytes(body, image_url), headers=JSON_TYPE
            )
        except httpx.TimeoutException as exc:
            raise BackendError(f"the upstream did not answer in time: {_describe(exc)}") from None
        except httpx.TransportError as exc:
            if self.client is not client:
                raise BackendDead("the backend was stopped") from None
            if isinstance(exc, httpx.ConnectError):
                self._dead_reason = f"upstream {self.base_url} is unreachable: {_describe(exc)}"
                raise BackendDead(self._dead_reason) from None
            raise BackendError(f"the upstream connection failed: {_describe(exc)}") from None
        if response.status_code == 429:
            raise QueueFull("the upstream is at capacity (429)")
        if response.status_code != 200:
            raise BackendError(
                f"the upstream refused the request ({response.status_code}): "
                f"{response.text[:200]!r}"
            )
        return _json(response)

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, path: str) -> Any:
        """GET a JSON document; a non-200 answer is an HTTPStatusError."""
        response = await client.get(path)
        response.raise_for_status()
        return _json(response)


def _json(response: httpx.Response) -> Any:
    """The response's JSON, or UpstreamInvalid."""
    try:
        return response.json()
    except ValueError:
        raise UpstreamInvalid(
            f"the upstream answered {response.headers.get('content-type', 'no type')}, not JSON"
        ) from None


def _describe(exc: BaseException) -> str:
    """An httpx error in one line (some have an empty message)."""
    return str(exc) or type(exc).__name__
