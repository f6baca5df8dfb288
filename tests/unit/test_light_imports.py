"""The light install: importing the SDK or the guards never imports heavy frameworks."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"torch", "transformers", "vllm", "fastapi", "xgrammar", "uvicorn", "starlette"}


@pytest.mark.parametrize(
    "module",
    [
        "boxguard.clients",
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
