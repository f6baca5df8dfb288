"""One grounding request end to end: model frame, prompt, constrained generation, guards.

The guards run in two pure phases around the evidence: prepare() plans, the service awaits
the crops and samples on the event loop, Plan.finish() decides. The whole request runs under
one deadline (`within_deadline`), so a backend fault anywhere is a 429/503/504.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from boxguard.guards import Policy, TokenLogprob, Verdict, prepare
from PIL import Image
from pydantic import ValidationError

from .backends import Backend, BackendDead, BackendError, Generation, GenerationRequest, QueueFull
from .errors import (
    AspectRatioTooLarge,
    BackendUnavailable,
    GenerationTimeout,
    InvalidPolicy,
    Overloaded,
    validation_errors,
)
from .evidence import gather_evidence
from .metrics import Metrics
from .model_source import recommended_policy
from .models import AspectRatioError, ModelAdapter, ModelFrame, resize_to_frame
from .schema import GroundRequest, GroundResponse, ImageInfo
from .settings import Settings

T = TypeVar("T")


def base_policy(settings: Settings) -> Policy:
    """The server-wide guard policy; a request may override fields within Policy's bounds.

    Precedence: env/flags given explicitly, then the bundled checkpoint's recommended policy
    (`model_source.POLICY_FILE`, only without --model), then the server defaults.
    """
    fields: dict[str, Any] = recommended_policy(settings.model)
    for name in ("visual_check", "self_consistency_k"):
        if name in settings.model_fields_set or name not in fields:
            fields[name] = getattr(settings, name)
    if settings.min_confidence is not None:
        fields["min_confidence"] = settings.min_confidence
    return Policy(**fields)


def request_policy(base: Policy, overrides: dict[str, Any] | None, settings: Settings) -> Policy:
    """Apply a request's overrides; out-of-range or unknown fields are a 422 invalid_policy."""
    if not overrides:
        return base
    try:
        policy = Policy.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        raise InvalidPolicy(
            "the policy override is invalid", validation_errors(exc.errors())
        ) from None
    if policy.self_consistency_k > settings.max_policy_samples:
        raise InvalidPolicy(
            f"self_consistency_k may be at most {settings.max_policy_samples} on this server"
        )
    return policy


class GroundingService:
    """Holds the adapter, backend and policy; grounds one decoded image at a time."""

    def __init__(
        self, settings: Settings, adapter: ModelAdapter, backend: Backend, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.backend = backend
        self.metrics = metrics
        self.policy = base_policy(settings)
        self.model_name = settings.model_name or "boxguard-demo"

    async def ground(
        self, image: Image.Image, req: GroundRequest, request_id: str, timings: dict[str, float]
    ) -> GroundResponse:
        """Generate under the constraint, verify, and answer in original-image pixels."""
        policy = request_policy(self.policy, req.policy, self.settings)
        frame, gen_request = self.generation_request(image, req, request_id)
        started = time.perf_counter()
        generation = await self.generate(gen_request)
        timings["generate"] = _ms_since(started)
        self.metrics.stage_seconds.labels("generate").observe(timings["generate"] / 1000)
        self.metrics.generated_tokens.inc(generation.generated_tokens)
        self.metrics.prompt_tokens.inc(generation.prompt_tokens)
        completion = generation.completions[0]
        tokens = [
            TokenLogprob(token=t.text, logprob=min(0.0, t.logprob)) for t in completion.tokens
        ]
        verdict = await self.check(
            completion.text, tokens, image, frame, req, policy, gen_request, timings
        )
        self._record(verdict)
        return GroundResponse(
            **dict(verdict),
            id=request_id,
            raw_output=completion.text if req.return_raw else None,
            image=ImageInfo(
                width=image.width,
                height=image.height,
                model_width=frame.width,
                model_height=frame.height,
            ),
            model=self.model_name,
            timings_ms=timings,
        )

    def generation_request(
        self, image: Image.Image, req: GroundRequest, request_id: str
    ) -> tuple[ModelFrame, GenerationRequest]:
        """The model frame of `image` and the constrained request for the model's answer."""
        try:
            frame = self.adapter.model_frame(*image.size)
        except AspectRatioError as exc:
            raise AspectRatioTooLarge(str(exc)) from None
        constraint = self.adapter.constraint(
            frame,
            multiple=req.multiple,
            think=req.think,
            max_detections=self.settings.max_detections,
            max_label_chars=self.settings.max_label_chars,
            max_tokens=self.settings.max_new_tokens,
            think_max_tokens=self.settings.think_max_tokens,
        )
        request = GenerationRequest(
            prompt=self.adapter.prompt(req.expression, multiple=req.multiple, think=req.think),
            image=resize_to_frame(image, (frame.width, frame.height)),
            constraint=constraint,
            request_id=request_id,
            seed=self.settings.seed,
        )
        return frame, request

    async def check(
        self,
        output: str,
        tokens: list[TokenLogprob],
        image: Image.Image,
        frame: ModelFrame,
        req: GroundRequest,
        policy: Policy,
        gen_request: GenerationRequest,
        timings: dict[str, float],
    ) -> Verdict:
        """The guards on one answer: prepare, await the evidence the plan needs, finish."""
        started = time.perf_counter()
        # In a thread: the label check may run the optional embedding model.
        plan = await asyncio.to_thread(
            prepare,
            output,
            req.expression,
            image.size,
            frame=frame.frame,
            model_size=(frame.width, frame.height),
            multiple=req.multiple,
            token_logprobs=tokens,
            policy=policy,
        )
        evidence = None
        if plan.needs_evidence:
            evidence_started = time.perf_counter()
            evidence = await gather_evidence(
                plan,
                image,
                gen_request,
                adapter=self.adapter,
                generate=self.generate,
                sample_temperature=self.settings.sample_temperature,
            )
            timings["evidence"] = _ms_since(evidence_started)
            self.metrics.stage_seconds.labels("evidence").observe(timings["evidence"] / 1000)
        verdict = plan.finish(evidence)
        timings["verify"] = _ms_since(started)
        self.metrics.stage_seconds.labels("verify").observe(timings["verify"] / 1000)
        return verdict

    async def within_deadline(self, work: Awaitable[T]) -> T:
        """Run `work` (decode, generation, checks) under the request's one deadline (504)."""
        try:
            return await asyncio.wait_for(work, timeout=self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            self.metrics.cancelled.labels("deadline").inc()
            raise GenerationTimeout(
                f"no answer within the request deadline of {self.settings.request_timeout_s:g} s"
            ) from None

    async def generate(self, request: GenerationRequest) -> Generation:
        """Call the backend, mapping its failures to HTTP problems (429, 503)."""
        try:
            return await self.backend.generate(request)
        except QueueFull:
            raise Overloaded(
                "the request queue is full; retry later",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from None
        except (BackendDead, BackendError) as exc:
            raise BackendUnavailable(
                "the model backend failed; retry later",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from exc

    def _record(self, verdict: Verdict) -> None:
        for check in verdict.checks:
            self.metrics.checks.labels(check.name, "passed" if check.passed else "failed").inc()
        for reason in verdict.reasons:
            self.metrics.abstentions.labels(reason).inc()
        for det in verdict.detections:
            if det.confidence is not None:
                self.metrics.confidence.observe(det.confidence)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
