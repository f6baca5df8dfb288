"""A plan's evidence comes from real model calls: crops batched in one pass, samples as n=k."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boxguard.guards import Policy, prepare
from boxguard.server.backends.transformers_backend import TransformersBackend
from boxguard.server.evidence import gather_evidence
from boxguard.server.grounding import GroundingService
from boxguard.server.metrics import get_metrics
from boxguard.server.models import adapter_for
from boxguard.server.policy_source import server_policy
from boxguard.server.schema import GroundRequest
from boxguard.server.settings import Settings
from PIL import Image

THREE = json.dumps(
    [
        {"bbox_2d": [20, 20, 100, 80], "label": "red circle"},
        {"bbox_2d": [150, 30, 220, 120], "label": "red circle"},
        {"bbox_2d": [40, 100, 90, 160], "label": "red circle"},
    ]
)


async def test_crops_batch_in_one_engine_pass_and_samples_in_one_call(
    tiny_checkpoint: Path,
) -> None:
    # Short labels and one box, so that 96 tokens always complete a sample's JSON.
    settings = Settings(
        model=str(tiny_checkpoint), max_new_tokens=96, max_label_chars=16, max_detections=1
    )
    adapter = adapter_for(tiny_checkpoint)
    backend = TransformersBackend(settings, str(tiny_checkpoint), adapter)
    await backend.start()
    passes: list[tuple[int, bool]] = []  # (sequences, sampled) of each engine call
    engine = backend.engine
    assert engine is not None
    original = engine.generate

    def counting(jobs: list[Any], params: Any) -> Any:
        passes.append((len(jobs), params.do_sample))
        return original(jobs, params)

    engine.generate = counting  # type: ignore[method-assign]
    try:
        service = GroundingService(
            settings, adapter, backend, get_metrics(), server_policy(settings, str(tiny_checkpoint))
        )
        image = Image.new("RGB", (320, 240), "white")
        req = GroundRequest(expression="the red circles", multiple=True)
        job = service.generation_request(req, image, "t1")
        frame, request = job.frame, job.generation
        # visual_check non-fatal: a random model may say "no", self_consistency must still run.
        policy = Policy(
            visual_check=True,
            self_consistency_k=3,
            min_confidence=0.0,
            label_embeddings=False,
            fatal=Policy().fatal - {"visual_check"},
        )
        plan = prepare(
            THREE,
            "the red circle",
            image.size,
            frame="pixels",
            model_size=(frame.width, frame.height),
            multiple=True,
            policy=policy,
        )
        assert len(plan.crops) == 3 and plan.samples == 3

        evidence = await gather_evidence(
            plan,
            image,
            request,
            adapter=adapter,
            backend=backend,
            sample_temperature=settings.sample_temperature,
        )
        # The three crops in one greedy pass, the three samples in one sampled pass.
        assert sorted(passes) == [(3, False), (3, True)], passes
        assert len(evidence.yes_probabilities) == 3
        assert all(0.0 <= p <= 1.0 for p in evidence.yes_probabilities)
        assert len(evidence.samples) == 3
        for text in evidence.samples:
            assert isinstance(json.loads(text), list)

        verdict = plan.finish(evidence)
        checks = {c.name: c for c in verdict.checks}
        assert checks["visual_check"].score == min(evidence.yes_probabilities)
        assert checks["self_consistency"].score is not None
    finally:
        await backend.stop()
