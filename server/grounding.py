"""One grounding request end to end: image, model frame, prompt, constrained generation, guards.

The guards run in two pure phases around the evidence: prepare() plans, the service awaits
the crops and samples on the event loop, Plan.finish() decides. `run` is the one boundary of
the request: its deadline covers the image fetch, decode, generation and every check, and it
maps faults (a full queue, a dead backend, a failed check dependency, the deadline) to HTTP
problems through `errors.problem_for_fault`, so a fault anywhere is a 429/503/504, never a
verdict.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from boxguard.guards import GuardFault, TokenLogprob, Verdict, prepare
from boxguard.guards.wire import PolicyInForce
from PIL import Image

from .backends import Backend, BackendError, GenerationRequest
from .constraints import yes_no_constraint
from .context import RequestContext
from .errors import (
    AspectRatioTooLarge,
    BadRequest,
    GenerationTimeout,
    ImageUrlDisabled,
    MissingImage,
    problem_for_fault,
)
from .evidence import gather_evidence
from .imaging import decode_base64_image, open_image
from .metrics import Metrics
from .models import AspectRatioError, ModelAdapter, ModelFrame, frame_input
from .policy_source import request_policy
from .recording import Recorder
from .schema import GroundRequest, GroundResponse, ImageInfo
from .settings import Settings

log = logging.getLogger("boxguard.server")


@dataclass(frozen=True)
class Grounding:
    """What one request grounds: the request, its decoded image, its model frame and prompt."""

    req: GroundRequest
    image: Image.Image
    frame: ModelFrame
    generation: GenerationRequest


class GroundingService:
    """Holds the adapter, backend and server policy; grounds one request at a time."""

    def __init__(
        self,
        settings: Settings,
        adapter: ModelAdapter,
        backend: Backend,
        metrics: Metrics,
        policy: PolicyInForce,
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.backend = backend
        self.metrics = metrics
        self.policy = policy
        self.model_name = settings.model_name or "boxguard-demo"
        self.recorder: Recorder | None = None  # set by the app when --record is on
        self.warm = False  # set by the app once warmup() ran after the backend's (re)start

    async def warmup(self) -> None:
        """One answer and one yes/no question on a blank image: grammars compiled, first
        batch allocated, so the first requests are neither slow nor late."""
        image = Image.new("RGB", (64, 64), "white")
        answer = self.generation_request(GroundRequest(expression="the object"), image, "warmup")
        question = "Is this an object? Answer yes or no."
        crop = GenerationRequest(
            prompt=self.adapter.chat(question),
            user_text=question,
            image=answer.generation.image,
            constraint=yes_no_constraint(),
            request_id="warmup-visual",
            frame_size=answer.generation.frame_size,
        )
        await asyncio.gather(self.backend.generate(answer.generation), self.backend.generate(crop))

    async def run(
        self, ctx: RequestContext, req: GroundRequest, upload: bytes | None = None
    ) -> GroundResponse:
        """The whole request under its deadline; faults become 429/503/504 problems.

        `upload` is a multipart file's bytes; otherwise the image comes from the request.
        """
        retry_after = {"Retry-After": str(self.settings.retry_after_s)}
        try:
            return await asyncio.wait_for(self._ground(ctx, req, upload), ctx.remaining_s())
        except asyncio.TimeoutError:
            ctx.cancel_cause = "deadline"
            self.metrics.cancelled.labels("deadline").inc()
            raise GenerationTimeout(
                f"no answer within the request deadline of {ctx.timeout_s:g} s"
            ) from None
        except (BackendError, GuardFault) as exc:
            log.warning("request %s failed: %s: %s", ctx.id, type(exc).__name__, exc)
            raise problem_for_fault(exc, headers=retry_after) from exc

    async def _ground(
        self, ctx: RequestContext, req: GroundRequest, upload: bytes | None
    ) -> GroundResponse:
        """Policy, image, generation, guards: the request's stages in order."""
        ctx.policy = request_policy(
            self.policy, req.policy, max_samples=self.settings.max_policy_samples
        )
        with ctx.stage("decode", self.metrics):
            image = await self._image(ctx, req, upload)
        # Off the loop, as vLLM's server runs its processor: the frame resize takes 2-3 ms of
        # CPU a request (PIL releases the GIL meanwhile), which would stall every other request.
        job = await asyncio.to_thread(self.generation_request, req, image, ctx.id)
        with ctx.stage("generate", self.metrics):
            generation = await self.backend.generate(job.generation)
        self.metrics.generated_tokens.inc(generation.generated_tokens)
        self.metrics.prompt_tokens.inc(generation.prompt_tokens)
        completion = generation.completions[0]
        tokens = [
            TokenLogprob(token=t.text, logprob=min(0.0, t.logprob)) for t in completion.tokens
        ]
        with ctx.stage("verify", self.metrics):
            verdict = await self.check(ctx, job, completion.text, tokens)
        self._record(verdict)
        response = GroundResponse(
            **dict(verdict),
            id=ctx.id,
            raw_output=completion.text if req.return_raw else None,
            image=ImageInfo(
                width=image.width,
                height=image.height,
                model_width=job.frame.width,
                model_height=job.frame.height,
            ),
            model=self.model_name,
            timings_ms=ctx.timings,
            policy=ctx.policy,
        )
        if self.recorder is not None:
            self.recorder.submit(ctx, req, upload, image, job.frame, completion.text, response)
        return response

    async def _image(
        self, ctx: RequestContext, req: GroundRequest, upload: bytes | None
    ) -> Image.Image:
        """The request's one image, fetched or decoded from base64, opened within the limits."""
        sources = (upload is not None) + (req.image is not None) + (req.image_url is not None)
        if sources > 1:
            raise BadRequest("send the image once: a file part, or `image`, or `image_url`")
        data = upload
        if req.image_url is not None:
            if not self.settings.image_url_enabled:
                raise ImageUrlDisabled("set BOXGUARD_IMAGE_URL_ENABLED=true to allow image_url")
            from .fetch import fetch_image

            data = await fetch_image(req.image_url, self.settings, timeout_s=ctx.remaining_s())
        elif req.image is not None:
            data = decode_base64_image(req.image)
        if data is None:
            raise MissingImage("send `image` (base64 or data URL) or a multipart `image` file")
        return await asyncio.to_thread(
            open_image,
            data,
            max_pixels=self.settings.max_image_pixels,
            min_side=self.settings.min_image_side,
            max_aspect_ratio=self.settings.max_aspect_ratio,
        )

    def generation_request(
        self, req: GroundRequest, image: Image.Image, request_id: str
    ) -> Grounding:
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
            output=req.output,
        )
        user_text = self.adapter.user_text(
            req.expression, multiple=req.multiple, think=req.think, output=req.output
        )
        frame_image, frame_size = frame_input(
            image, (frame.width, frame.height), self.settings.frame_resizer
        )
        request = GenerationRequest(
            prompt=self.adapter.chat(user_text),
            user_text=user_text,
            image=frame_image,
            constraint=constraint,
            request_id=request_id,
            seed=self.settings.seed,
            frame_size=frame_size,
        )
        return Grounding(req, image, frame, request)

    async def check(
        self, ctx: RequestContext, job: Grounding, output: str, tokens: list[TokenLogprob]
    ) -> Verdict:
        """The guards on one answer: prepare, await the evidence the plan needs, finish."""
        policy = ctx.policy or self.policy
        # In a thread: the label check may run the optional embedding model.
        plan = await asyncio.to_thread(
            prepare,
            output,
            job.req.expression,
            job.image.size,
            frame=job.frame.frame,
            model_size=(job.frame.width, job.frame.height),
            multiple=job.req.multiple,
            token_logprobs=tokens,
            policy=policy.values,
            mode=job.req.output,
        )
        evidence = None
        if plan.needs_evidence:
            with ctx.stage("evidence", self.metrics):
                evidence = await gather_evidence(
                    plan,
                    job.image,
                    job.generation,
                    adapter=self.adapter,
                    backend=self.backend,
                    sample_temperature=self.settings.sample_temperature,
                    frame_resizer=self.settings.frame_resizer,
                )
        return plan.finish(evidence)

    def _record(self, verdict: Verdict) -> None:
        for check in verdict.checks:
            result = "not_run" if not check.ran else "passed" if check.passed else "failed"
            self.metrics.checks.labels(check.name, result).inc()
        for reason in verdict.reasons:
            self.metrics.abstentions.labels(reason).inc()
        for det in verdict.detections:
            if det.confidence is not None:
                self.metrics.confidence.observe(det.confidence)
