"""Test helpers: the real server in a background thread, test images, bench scripts."""

from __future__ import annotations

import base64
import importlib
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from boxguard.server.serve import serve_in_thread  # noqa: F401  (re-exported for tests)
from PIL import Image


def png_bytes(size: tuple[int, int] = (320, 240), color: str = "white", fmt: str = "PNG") -> bytes:
    """An encoded plain image."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    """Base64 text of bytes."""
    return base64.b64encode(data).decode()


def has_area(coords: list[float]) -> bool:
    """True for a raw [x1, y1, x2, y2] the server returns as a box (degenerate ones it drops)."""
    x1, y1, x2, y2 = coords
    return x1 != x2 and y1 != y2


def bench_module(name: str) -> ModuleType:
    """A bench/ script as a module (bench is no package: its scripts import each other by name)."""
    bench = str(Path(__file__).resolve().parents[1] / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 10.0, every_s: float = 0.1
) -> bool:
    """Whether `predicate` came true within `timeout_s`, polled every `every_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False
