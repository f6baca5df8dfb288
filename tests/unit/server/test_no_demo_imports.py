"""The server never imports the demo (the demo may import the server: it trains through it)."""

from __future__ import annotations

import subprocess
import sys

# Imports every module of boxguard.server; a module needing an absent vLLM is skipped.
CODE = """
import importlib, pkgutil, sys
import boxguard.server as server
names = [m.name for m in pkgutil.walk_packages(server.__path__, "boxguard.server.")]
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "vllm":
            raise
demo = sorted(m for m in sys.modules if m.startswith("boxguard.demo"))
print(len(names), ",".join(demo))
"""


def test_importing_every_server_module_never_imports_the_demo() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    count, _, demo = done.stdout.strip().rpartition("\n")[2].partition(" ")
    assert int(count) > 10, f"only {count} server modules found"
    assert demo == "", f"the server imported {demo}"
