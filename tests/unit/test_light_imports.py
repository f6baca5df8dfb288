"""The light install: importing the SDK, the CLI or the guards never imports heavy frameworks."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"torch", "transformers", "vllm", "fastapi", "xgrammar", "uvicorn", "starlette"}


@pytest.mark.parametrize(
    "module",
    [
        "boxguard.clients",
        "boxguard.cli",
        "boxguard.cli.commands",
        "boxguard.guards",
        "boxguard.guards.wire",
        "boxguard.server.schema",
        "boxguard.server",
    ],
)
def test_import_stays_light(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_cli_help_imports_neither_heavy_frameworks_nor_server_nor_demo() -> None:
    """`boxguard --help` and the client commands work on the light install."""
    code = (
        "import sys\n"
        "from boxguard.cli.commands import main\n"
        "sys.argv = ['boxguard', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'transformers', 'vllm', 'fastapi', 'uvicorn', 'matplotlib'}\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy\n"
        "       or m.startswith(('boxguard.server', 'boxguard.demo'))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
