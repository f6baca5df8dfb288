"""The model-backed evidence a guards Plan asks for, awaited on the event loop.

All crops of one request go to the backend together (the transformers backend's queue runs
same-shaped requests as one batch; vLLM batches whatever is in flight), the samples as one n=k
request, both at once. The first failure cancels the rest and propagates: an overloaded, dead
or late backend, or a yes/no answer that is not one, is an error of the request, never an
abstention.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import TypeVar

from boxguard.guards import CropQuestion, Evidence, Plan
from PIL import Image

from .backends import Backend, BackendError, Generation, GenerationRequest
from .constraints import yes_no_constraint
from .models import ModelAdapter, frame_input
from .models.resize import MAX_ASPECT_RATIO

T = TypeVar("T")

# The visual check's prompt: the guards' bare question plus the answer format. The demo's
# visual re-check is trained on exactly this wording, the crop margin and the yes|no choice.
YES_NO_SUFFIX = " Answer yes or no."


def crop_box(bbox: Sequence[float], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer crop of `bbox`: at least 1 px per side, short side widened to a ratio of 200.

    Example:
        >>> crop_box((10.4, 10.6, 10.6, 20.2), (100, 100))
        (10, 11, 11, 20)
    """
    width, height = image_size
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    # A sliver no model processor accepts: widen it (the image itself is within the ratio).
    need_w = math.ceil((y2 - y1) / MAX_ASPECT_RATIO)
    if x2 - x1 < need_w:
        x1 = max(0, min(x1, width - need_w))
        x2 = x1 + need_w
    need_h = math.ceil((x2 - x1) / MAX_ASPECT_RATIO)
    if y2 - y1 < need_h:
        y1 = max(0, min(y1, height - need_h))
        y2 = y1 + need_h
    return x1, y1, x2, y2


def crop_request(
    adapter: ModelAdapter,
    image: Image.Image,
    crop: CropQuestion,
    request_id: str,
    frame_resizer: str = "pil",
) -> GenerationRequest:
    """The yes|no request about one crop of the original image, in its model frame."""
    region = image.crop(crop_box(crop.bbox, image.size))
    frame = adapter.model_frame(*region.size)
    question = f"{crop.question}{YES_NO_SUFFIX}"
    crop_image, frame_size = frame_input(region, (frame.width, frame.height), frame_resizer)
    return GenerationRequest(
        prompt=adapter.chat(question),
        user_text=question,
        image=crop_image,
        constraint=yes_no_constraint(),
        request_id=request_id,
        frame_size=frame_size,
    )


async def crop_requests(
    adapter: ModelAdapter,
    image: Image.Image,
    crops: Sequence[CropQuestion],
    request_id: str,
    frame_resizer: str = "pil",
) -> list[GenerationRequest]:
    """The yes|no requests of all crops, built off the loop (their resizes take milliseconds)."""
    if not crops:
        return []
    return await asyncio.to_thread(
        lambda: [
            crop_request(adapter, image, crop, f"{request_id}-visual{i}", frame_resizer)
            for i, crop in enumerate(crops)
        ]
    )


def yes_probability(generation: Generation) -> float:
    """P(yes) of a yes|no answer: under the constraint the first token decides.

    The answer is `yes`, `no` or their first token (the constraint stops there). Its logprob is
    renormalized over the two allowed branches, so P(no) = 1 - P(yes). An answer that is
    neither, or has no scored token, is the backend's fault (BackendError, a 503), never
    P(yes) = 0: that would abstain on a right box for an engine bug.
    """
    completion = generation.completions[0] if generation.completions else None
    text = completion.text.strip() if completion is not None else ""
    branch = next((b for b in ("yes", "no") if text and b.startswith(text)), None)
    if completion is None or not completion.tokens or branch is None:
        raise BackendError(f"the yes/no check got no yes/no answer: {text[:40]!r}")
    p_first = math.exp(completion.tokens[0].logprob)
    return p_first if branch == "yes" else 1.0 - p_first


async def all_or_cancel(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await all; on the first failure (or our cancellation) cancel the rest and re-raise.

    Every task's exception is retrieved, so two that fail together log no "Task exception was
    never retrieved"; the first failure in call order is raised.
    """
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome
    return list(outcomes)  # type: ignore[arg-type]


async def gather_evidence(
    plan: Plan,
    image: Image.Image,
    request: GenerationRequest,
    *,
    adapter: ModelAdapter,
    backend: Backend,
    sample_temperature: float,
    frame_resizer: str = "pil",
) -> Evidence:
    """Ask the backend for everything `plan` needs: every crop at once, the samples as n=k.

    Backend exceptions propagate as they are; the service maps them to HTTP problems.
    """
    requests = await crop_requests(adapter, image, plan.crops, request.request_id, frame_resizer)
    if plan.samples > 0:
        requests.append(
            replace(
                request,
                n=plan.samples,
                temperature=sample_temperature,
                request_id=f"{request.request_id}-samples",
            )
        )
    # Submitted in one go, so the crops reach the backend's queue together and batch.
    generations = await all_or_cancel([backend.generate(r) for r in requests])
    crops = generations[: len(plan.crops)]
    samples = generations[len(plan.crops) :]
    return Evidence(
        yes_probabilities=tuple(yes_probability(g) for g in crops),
        samples=tuple(c.text for g in samples for c in g.completions),
    )
