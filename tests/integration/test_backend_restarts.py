"""Backend restarts by the supervisor: off the event loop, and after a fatal engine error."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from boxguard.server.app import create_app
from boxguard.server.backends import vllm_backend as vb
from boxguard.server.backends.transformers_backend import TransformersBackend
from boxguard.server.grounding import GroundingService
from boxguard.server.models import adapter_for
from boxguard.server.settings import Settings
from support import b64, png_bytes, serve_in_thread, wait_until

BODY = {"image": b64(png_bytes((64, 48))), "expression": "the red circle"}


class _SlowVLLM:
    """vLLM's AsyncLLM stand-in: from_engine_args blocks its thread, as a real load does."""

    def __init__(self) -> None:
        self.builds = 0
        self.load_s = 0.0
        self.loading = threading.Event()
        self.engines: list[Any] = []

    def from_engine_args(self, args: Any, usage_context: Any = None) -> Any:
        self.builds += 1
        self.loading.set()
        time.sleep(self.load_s)  # blocking on purpose: on the loop it would stall /healthz
        self.loading.clear()
        engine = SimpleNamespace(
            errored=False,
            get_tokenizer=lambda: None,  # nothing is decoded: no request reaches it
            vllm_config=SimpleNamespace(
                scheduler_config=SimpleNamespace(max_num_seqs=4),
                model_config=SimpleNamespace(hf_config=SimpleNamespace(image_token_id=151655)),
            ),
            shutdown=lambda: time.sleep(self.load_s / 2),
        )
        self.engines.append(engine)
        return engine


def test_healthz_answers_within_100ms_while_vllm_restarts(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _SlowVLLM()
    fake = SimpleNamespace(
        version="fake",
        AsyncLLM=slow,
        AsyncEngineArgs=lambda **kw: kw,
        StructuredOutputsConfig=lambda **kw: kw,
        UsageContext=SimpleNamespace(OPENAI_API_SERVER="server"),
    )
    monkeypatch.setattr(vb, "_import_vllm", lambda: fake)

    async def no_warmup(self: GroundingService) -> None:
        """The stand-in engine generates nothing: this test is about restarts, not answers."""

    monkeypatch.setattr(GroundingService, "warmup", no_warmup)
    settings = Settings(model=str(tiny_checkpoint), backend="vllm", backend_check_interval_s=0.1)
    backend = vb.VLLMBackend(settings, str(tiny_checkpoint), adapter_for(tiny_checkpoint))
    with serve_in_thread(create_app(settings, backend=backend)) as url, httpx.Client() as client:
        assert client.get(url + "/readyz").status_code == 200
        slow.load_s = 2.0
        slow.engines[-1].errored = True  # engine death: the supervisor stops and restarts it
        assert slow.loading.wait(10), "the supervisor did not restart the engine"
        latencies = []
        while slow.loading.is_set():
            started = time.perf_counter()
            r = client.get(url + "/healthz", timeout=5)
            if slow.loading.is_set():  # answered during the load, not the heap freeze after it
                latencies.append(time.perf_counter() - started)
            assert r.status_code == 200
            time.sleep(0.05)
        assert len(latencies) >= 10, latencies
        assert max(latencies) < 0.1, latencies
        assert wait_until(lambda: client.get(url + "/readyz").status_code == 200, 10, every_s=0.02)
        assert slow.builds == 2


def test_fatal_engine_error_is_a_503_then_the_supervisor_restarts_the_backend(
    tiny_checkpoint: Path,
) -> None:
    settings = Settings(
        model=str(tiny_checkpoint), max_new_tokens=16, backend_check_interval_s=0.1, retry_after_s=2
    )
    backend = TransformersBackend(settings, str(tiny_checkpoint), adapter_for(tiny_checkpoint))
    with serve_in_thread(create_app(settings, backend=backend)) as url, httpx.Client() as client:
        assert client.post(url + "/ground", json=BODY, timeout=60).status_code == 200
        first_engine = backend.engine
        assert first_engine is not None
        # Warm: the startup heap, the engine included, is out of the collector's reach.
        assert gc.get_freeze_count() > 0
        assert not _tracked(first_engine)

        def cuda_failure(jobs: Any, params: Any) -> Any:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        first_engine.generate = cuda_failure  # type: ignore[method-assign]
        r = client.post(url + "/ground", json=BODY, timeout=60)
        assert r.status_code == 503 and r.json()["code"] == "backend_unavailable", r.text
        assert r.headers["retry-after"] == "2"
        assert wait_until(
            lambda: backend.engine is not first_engine and backend.ready, 60, every_s=0.02
        )
        # Ready again only once the restarted engine is warmed up, not as soon as it loads.
        assert wait_until(lambda: client.get(url + "/readyz").status_code == 200, 60, every_s=0.02)
        assert client.post(url + "/ground", json=BODY, timeout=60).status_code == 200
        # Frozen again once the restarted engine is warm.
        assert not _tracked(backend.engine)
    assert gc.get_freeze_count() == 0  # stopped: nothing left frozen


def _tracked(obj: object) -> bool:
    """Whether the collector may visit `obj` (frozen objects are in none of its generations)."""
    return any(o is obj for o in gc.get_objects())
