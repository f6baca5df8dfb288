"""The server's Verifier makes real model calls: crop yes/no and resampling through the backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from boxguard.guards import Policy, verify
from boxguard.server.backends import GenerationRequest
from boxguard.server.backends.transformers_backend import TransformersBackend
from boxguard.server.grounding import GroundingService
from boxguard.server.metrics import get_metrics
from boxguard.server.models import adapter_for, resize_to_frame
from boxguard.server.settings import Settings
from boxguard.server.verifier import BackendVerifier
from PIL import Image


async def test_verifier_runs_real_yes_no_and_sampling_calls(tiny_checkpoint: Path) -> None:
    settings = Settings(model=str(tiny_checkpoint), max_new_tokens=96)
    adapter = adapter_for(tiny_checkpoint)
    backend = TransformersBackend(settings, str(tiny_checkpoint), adapter)
    await backend.start()
    try:
        service = GroundingService(settings, adapter, backend, get_metrics())
        image = Image.new("RGB", (320, 240), "white")
        frame = adapter.model_frame(*image.size)
        request = GenerationRequest(
            prompt=adapter.prompt("the red circle"),
            image=resize_to_frame(image, (frame.width, frame.height)),
            constraint=adapter.constraint(
                frame,
                multiple=False,
                think=False,
                max_detections=1,
                max_label_chars=16,
                max_tokens=96,
                think_max_tokens=8,
            ),
            request_id="t1",
        )
        verifier = BackendVerifier(service, image, request, asyncio.get_running_loop(), settings)

        p_yes = await asyncio.to_thread(verifier.yes_probability, (10, 10, 120, 90), "Is this red?")
        assert 0.0 <= p_yes <= 1.0
        samples = await asyncio.to_thread(verifier.sample_outputs, 3)
        assert len(samples) == 3
        for text in samples:
            assert isinstance(json.loads(text), list)

        # The guards drive both checks through this verifier on a well-formed answer.
        answer = json.dumps([{"bbox_2d": [20, 20, 100, 80], "label": "red circle"}])
        # visual_check non-fatal: a random model may say "no", and self_consistency must still run.
        policy = Policy(
            visual_check=True,
            self_consistency_k=2,
            min_confidence=0.0,
            label_embeddings=False,
            fatal=Policy().fatal - {"visual_check"},
        )
        verdict = await asyncio.to_thread(
            verify,
            answer,
            "the red circle",
            image.size,
            frame="pixels",
            model_size=(frame.width, frame.height),
            verifier=verifier,
            policy=policy,
        )
        checks = {c.name: c for c in verdict.checks}
        assert checks["visual_check"].score is not None
        assert 0.0 <= checks["visual_check"].score <= 1.0
        assert checks["self_consistency"].score is not None
    finally:
        await backend.stop()
