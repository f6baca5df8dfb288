"""`import boxguard.clients` stays light: no torch, transformers, vLLM or FastAPI."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import boxguard.clients, sys; "
    "heavy = sorted(m for m in sys.modules "
    "if m.split('.')[0] in {'torch', 'transformers', 'vllm', 'fastapi'}); "
    "assert not heavy, heavy"
)


def test_import_is_light() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_exact_issue_check() -> None:
    code = (
        "import boxguard.clients, sys; assert not any(m.split('.')[0] in "
        "{'torch','transformers','vllm','fastapi'} for m in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_sdk_never_imports_the_server() -> None:
    """The SDK shares the wire schema through guards: no module of it imports the server."""
    code = (
        "import importlib, pkgutil, sys, boxguard.clients as c\n"
        "names = [m.name for m in pkgutil.walk_packages(c.__path__, 'boxguard.clients.')]\n"
        "assert len(names) > 5, names\n"
        "for name in names: importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m.startswith(('boxguard.server', 'boxguard.demo'))]\n"
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
