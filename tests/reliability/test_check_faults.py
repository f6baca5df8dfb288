"""Backend faults DURING the checks (visual re-check, self-consistency) are HTTP errors.

The real TransformersBackend serves the bundled demo checkpoint (it answers a lone shape with
a box, so the visual check has a crop to ask about) behind FaultyBackend, whose faults hit
only the visual check's yes|no generations. Nothing here may come back as `abstained`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from faulty_backend import FaultyBackend, is_visual_check
from rel_support import assert_problem
from support import b64, serve_in_thread
from test_faults import _raw_post, wait_for

pytest.importorskip("transformers")

from boxguard.demo.scenes import generate_scene, render_scene  # noqa: E402
from boxguard.server.model_source import BUNDLED_CHECKPOINT  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (BUNDLED_CHECKPOINT / "config.json").is_file(), reason="no bundled demo checkpoint"
)

RETRY_AFTER_S = 3
SHORT_DEADLINE_S = 2.0


def _scene_body() -> dict[str, Any]:
    import io

    scene = generate_scene(random.Random("smoke/0"), max_objects=1, p_large=1.0)
    (target,) = scene.objects
    buf = io.BytesIO()
    render_scene(scene).save(buf, "PNG")
    return {
        "image": b64(buf.getvalue()),
        "expression": f"the {target.color} {target.shape}",
        # Only the visual check abstains, so the plan asks for a crop whatever the labels say;
        # one sample, so a second generation waits in the queue behind the crop.
        "policy": {"visual_check": True, "self_consistency_k": 1, "fatal": ["visual_check"]},
    }


BODY = _scene_body()


def _demo_server(request_timeout_s: float) -> Iterator[tuple[str, FaultyBackend]]:
    from boxguard.server.app import create_app
    from boxguard.server.backends.transformers_backend import TransformersBackend
    from boxguard.server.models import adapter_for
    from boxguard.server.settings import Settings

    settings = Settings(
        request_timeout_s=request_timeout_s,
        retry_after_s=RETRY_AFTER_S,
        backend_check_interval_s=0.2,
    )
    adapter = adapter_for(BUNDLED_CHECKPOINT)
    backend = FaultyBackend(TransformersBackend(settings, str(BUNDLED_CHECKPOINT), adapter))
    with serve_in_thread(create_app(settings, backend=backend)) as url:
        for _ in range(5):  # the first requests compile the grammars
            if httpx.post(url + "/ground", json=BODY, timeout=60).status_code == 200:
                break
        yield url, backend


@pytest.fixture(scope="module")
def demo_server() -> Iterator[tuple[str, FaultyBackend]]:
    yield from _demo_server(60.0)


@pytest.fixture()
def server(demo_server: tuple[str, FaultyBackend]) -> Iterator[tuple[str, FaultyBackend]]:
    url, backend = demo_server
    backend.reset()
    assert wait_for(lambda: backend.ready and backend.idle, 60)
    yield url, backend
    backend.reset()
    backend.allow_restart()
    assert wait_for(lambda: backend.ready and backend.idle, 60)


def test_the_scene_needs_a_visual_check(server: tuple[str, FaultyBackend]) -> None:
    # The premise of this module: without faults the answer goes through the visual check.
    url, _ = server
    body = httpx.post(url + "/ground", json=BODY, timeout=60).json()
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["visual_check"]["score"] is not None, checks
    assert checks["self_consistency"]["score"] is not None, checks
    assert "evidence" in body["timings_ms"]


def test_full_queue_during_the_visual_check_is_a_429(server: tuple[str, FaultyBackend]) -> None:
    url, backend = server
    backend.only = is_visual_check
    backend.overloaded = True
    before = backend.generations
    r = httpx.post(url + "/ground", json=BODY, timeout=60)
    assert_problem(r, 429, "overloaded")
    assert r.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "abstained" not in r.text
    # The answer itself was generated (the sampled answers may have begun, then been
    # cancelled): the queue filled up during the check.
    assert backend.generations in (before + 1, before + 2)
    assert wait_for(lambda: backend.idle, 10)


def test_backend_death_during_a_check_is_a_503(server: tuple[str, FaultyBackend]) -> None:
    url, backend = server
    backend.only = is_visual_check
    backend.die = True
    r = httpx.post(url + "/ground", json=BODY, timeout=60)
    assert_problem(r, 503, "backend_unavailable")
    assert r.headers["retry-after"] == str(RETRY_AFTER_S)
    assert not backend.ready  # it did die, and the supervisor restarts it once allowed


def test_disconnect_during_the_checks_starts_no_further_generation(
    server: tuple[str, FaultyBackend],
) -> None:
    url, backend = server
    backend.only = is_visual_check
    backend.hang = True
    sock = _raw_post(url, json.dumps(BODY).encode())
    assert backend.hangs_entered.wait(30), "the visual check never started"
    # The sampled answers wait in the queue behind the hung crop batch.
    assert wait_for(lambda: backend.queue_depth >= 1, 5)
    sock.close()
    assert backend.hangs_released.wait(5), "the crop batch kept running for a gone client"
    started = backend.generations
    assert wait_for(lambda: backend.idle, 10)
    time.sleep(0.5)
    assert backend.generations == started, "a generation started after the disconnect"


@pytest.fixture(scope="module")
def short_deadline_server() -> Iterator[tuple[str, FaultyBackend]]:
    yield from _demo_server(SHORT_DEADLINE_S)


def test_the_deadline_covers_the_checks(
    short_deadline_server: tuple[str, FaultyBackend],
) -> None:
    url, backend = short_deadline_server
    backend.reset()
    backend.only = is_visual_check
    backend.hang = True  # the check would take the hang limit (60 s)
    try:
        started = time.monotonic()
        r = httpx.post(url + "/ground", json=BODY, timeout=30)
        elapsed = time.monotonic() - started
        assert_problem(r, 504, "generation_timeout")
        assert elapsed < SHORT_DEADLINE_S + 1.0, elapsed
        assert backend.hangs_entered.is_set(), "the deadline passed before the checks began"
        assert backend.hangs_released.wait(5), "the check kept running past the deadline"
    finally:
        backend.reset()
