"""The guards' Verifier, implemented with real model calls through the server's backend."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from PIL import Image

from .backends import GenerationRequest
from .constraints import yes_no_constraint
from .models import resize_to_frame

if TYPE_CHECKING:
    from .grounding import GroundingService
    from .settings import Settings


class BackendVerifier:
    """Answers the guards' yes/no crop questions and resamples, from a worker thread.

    verify() runs in a thread; each call here schedules the backend coroutine on the server's
    event loop and waits for it, so the visual check uses the same queue, batching and engine.
    """

    def __init__(
        self,
        service: GroundingService,
        image: Image.Image,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        settings: Settings,
    ) -> None:
        self.service = service
        self.image = image
        self.request = request
        self.loop = loop
        self.settings = settings

    def _call(self, request: GenerationRequest) -> object:
        future = asyncio.run_coroutine_threadsafe(self.service.generate(request), self.loop)
        return future.result(timeout=self.settings.request_timeout_s)

    def yes_probability(self, bbox: tuple[float, float, float, float], question: str) -> float:
        """P(yes) of the model for `question` about the crop of the original image at bbox."""
        x1, y1, x2, y2 = (int(round(v)) for v in bbox)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        crop = self.image.crop((x1, y1, x2, y2))
        adapter = self.service.adapter
        frame = adapter.model_frame(*crop.size)
        request = GenerationRequest(
            prompt=adapter.chat(f"{question} Answer yes or no."),
            image=resize_to_frame(crop, (frame.width, frame.height)),
            constraint=yes_no_constraint(),
            request_id=f"{self.request.request_id}-visual",
        )
        generation = self._call(request)
        completion = generation.completions[0]  # type: ignore[attr-defined]
        if not completion.tokens:
            return 0.0
        # Under the yes|no constraint the first token decides; its logprob is renormalized
        # over the two allowed branches.
        p_first = math.exp(completion.tokens[0].logprob)
        return p_first if completion.text.strip().startswith("yes") else 1.0 - p_first

    def sample_outputs(self, k: int) -> list[str]:
        """k sampled raw outputs of the same prompt and image."""
        if k <= 0:
            return []
        request = replace(
            self.request,
            n=k,
            temperature=self.settings.sample_temperature,
            request_id=f"{self.request.request_id}-samples",
        )
        generation = self._call(request)
        return [c.text for c in generation.completions]  # type: ignore[attr-defined]
