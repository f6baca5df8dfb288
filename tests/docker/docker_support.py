"""What the Docker tests share: paths, tool lookup, subprocess helpers and the image build."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

BASE_IMAGE = "boxguard/python-base:bookworm"
CPU_IMAGE = os.environ.get("BOXGUARD_TEST_CPU_IMAGE", "boxguard:cpu")
TORCH_VERSION = "2.13.0"
BASE_PYTHON_TAG = "cp311"  # Debian bookworm's python3


def missing_tool(what: str, hint: str) -> NoReturn:
    """A missing tool fails in CI (the CI script installs it) and skips elsewhere."""
    message = f"{what} not found: {hint}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def run_cmd(cmd: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def is_elf(path: Path) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"
    return False


GRAFANA_TEST_PASSWORD = "compose-test-password"


def compose_env() -> dict[str, str]:
    """The defaults of compose.yaml, whatever this shell exports, plus the one value it requires
    (Grafana's admin password has no default)."""
    prefixes = ("BOXGUARD_", "GRAFANA_", "COMPOSE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, "GRAFANA_ADMIN_PASSWORD": GRAFANA_TEST_PASSWORD}


def engine_up(docker: str) -> bool:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return run_cmd([docker, "info"], timeout=20).returncode == 0
    return False


def image_exists(docker: str, tag: str) -> bool:
    return run_cmd([docker, "image", "inspect", tag], timeout=30).returncode == 0


def find_links_dirs() -> list[Path]:
    """The directories pip's --find-links names here (env and pip config)."""
    values = os.environ.get("PIP_FIND_LINKS", "").split()
    listing = run_cmd([sys.executable, "-m", "pip", "config", "list"], timeout=60).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            values += value.strip().strip("'\"").split()
    dirs = [Path(v.removeprefix("file://")) for v in values]
    return [d for d in dirs if d.is_dir()]


def prepare_build_args() -> list[str]:
    """Wheelhouse and CA bundle build args for this machine.

    A local CPU torch wheel that pip would use here goes into docker/wheelhouse/ (git-ignored);
    without one the image takes torch from the PyTorch CPU index. The host's CA bundle is trusted
    during the build, for TLS-intercepting proxies.
    """
    args: list[str] = []
    pattern = f"torch-{TORCH_VERSION}+cpu-{BASE_PYTHON_TAG}-*linux*x86_64.whl"
    wheels = sorted(w for d in find_links_dirs() for w in d.glob(pattern))
    if wheels:
        target = DOCKER_DIR / "wheelhouse" / wheels[0].name
        if not target.exists() or target.stat().st_size != wheels[0].stat().st_size:
            target.unlink(missing_ok=True)
            try:
                os.link(wheels[0], target)
            except OSError:
                shutil.copyfile(wheels[0], target)
        args += ["--build-arg", "WHEELHOUSE=on", "--build-arg", "TORCH_INDEX_URL="]
    bundle = next(
        (
            Path(p)
            for p in (
                os.environ.get("PIP_CERT"),
                os.environ.get("SSL_CERT_FILE"),
                "/etc/ssl/certs/ca-certificates.crt",
            )
            if p and Path(p).is_file()
        ),
        None,
    )
    if bundle is not None:
        shutil.copyfile(bundle, DOCKER_DIR / "certs" / "host-ca.pem")
        args += ["--build-arg", "EXTRA_CA_BUNDLE=host-ca.pem"]
    return args


def timed(
    label: str,
    timings: dict[str, float],
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Run cmd in the repository root, record its wall time, fail with its output's tail."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        try:
            code = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT, env=env
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        log.seek(0)
        output = log.read()
    timings[label] = round(time.monotonic() - start, 1)
    assert code == 0, f"{label} failed ({code}) after {timings[label]}s:\n{output[-4000:]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inspect_container(docker: str, container: str, template: str) -> str:
    return run_cmd([docker, "inspect", "--format", template, container], timeout=30).stdout.strip()
