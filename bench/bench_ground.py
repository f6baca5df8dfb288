"""Latency of one POST /ground on the CPU with the built-in checkpoint (pytest-benchmark).

Run: python -m pytest bench/bench_ground.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from boxguard.server.app import create_app  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from support import b64, png_bytes  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(model=None)
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.mark.parametrize("think", [False, True], ids=["plain", "think"])
def test_ground_latency(benchmark, server: str, think: bool) -> None:  # type: ignore[no-untyped-def]
    body = {"image": b64(png_bytes((640, 480))), "expression": "the red circle", "think": think}
    with httpx.Client(base_url=server, timeout=60) as client:
        client.post("/ground", json=body)  # warm-up

        def one() -> int:
            return client.post("/ground", json=body).status_code

        status = benchmark.pedantic(one, rounds=50, iterations=1)
    assert status == 200
