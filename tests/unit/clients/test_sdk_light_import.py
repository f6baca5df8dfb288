"""`import boxguard.clients` stays light: no torch, transformers, vLLM or FastAPI."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import boxguard.clients, boxguard.clients.cli, sys; "
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


def test_cli_help_is_light() -> None:
    code = (
        "import sys\n"
        "from boxguard.clients.cli import main\n"
        "sys.argv = ['boxguard', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'transformers', 'vllm', 'fastapi', 'uvicorn', 'matplotlib'}]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_sdk_never_imports_the_server() -> None:
    """The SDK shares the wire schema through guards; only the CLI's `serve` needs the server."""
    code = (
        "import boxguard.clients, boxguard.clients.evaluation, boxguard.clients.report, sys; "
        "server = sorted(m for m in sys.modules if m.startswith('boxguard.server')); "
        "assert not server, server"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
