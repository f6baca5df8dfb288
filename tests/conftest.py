"""Shared fixtures: the built-in tiny checkpoint and a live server using it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Every live server in the suite tokenizes on worker threads; silence the fork warnings once.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests where there is no GPU."""
    if _torch_has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in random-weight Qwen2.5-VL checkpoint, built once per session."""
    pytest.importorskip("torch")
    from boxguard.server.tiny_checkpoint import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2_5_vl")


@pytest.fixture(scope="session")
def server_settings(tiny_checkpoint: Path) -> object:
    """Settings of the shared live server (small limits so limit tests are cheap)."""
    from boxguard.server.settings import Settings

    return Settings(
        model=str(tiny_checkpoint),
        max_body_bytes=2 * 1024 * 1024,
        max_image_pixels=4_000_000,
        max_new_tokens=96,
        think_max_tokens=24,
    )


@pytest.fixture(scope="session")
def live_server(server_settings: object) -> Iterator[str]:
    """Base URL of a real uvicorn server on loopback serving the tiny checkpoint."""
    from boxguard.server.app import create_app
    from support import serve_in_thread

    with serve_in_thread(create_app(server_settings)) as url:  # type: ignore[arg-type]
        yield url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Lines tests recorded with record_property("summary", ...), once the run is over."""
    lines = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "summary"
    ]
    if lines:
        terminalreporter.write_sep("-", "summaries")
        for line in lines:
            terminalreporter.write_line(line)
