"""Fixtures of the reliability suite: a fuzz-tuned live server and the fuzz tally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_support import write_tally


@pytest.fixture(scope="session")
def fuzz_settings(tiny_checkpoint: Path) -> object:
    """A live server tuned for many cheap requests: small model frame, few tokens.

    max_pixels is 28*28*200: below that, images within the 200 aspect-ratio limit can get a
    frame the processor resizes again (test_small_max_pixels_elongated_image_is_not_a_5xx).
    """
    from boxguard.server.settings import Settings

    return Settings(
        model=str(tiny_checkpoint),
        min_pixels=28 * 28 * 4,
        max_pixels=28 * 28 * 200,
        max_new_tokens=8,
        think_max_tokens=8,
        max_body_bytes=2 * 1024 * 1024,
        max_image_pixels=4_000_000,
        request_timeout_s=120,
    )


@pytest.fixture(scope="session")
def fuzz_server(fuzz_settings: object) -> Iterator[str]:
    """Base URL of a real uvicorn server on loopback for the fuzzers."""
    from boxguard.server.app import create_app
    from support import serve_in_thread

    with serve_in_thread(create_app(fuzz_settings)) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture(scope="session", autouse=True)
def _fuzz_tally() -> Iterator[None]:
    yield
    write_tally()
