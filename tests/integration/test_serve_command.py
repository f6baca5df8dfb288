"""`boxguard serve` as a user runs it: a real process, flags on top of env, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SERVE = [sys.executable, "-m", "boxguard.cli", "serve"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BOXGUARD_")}
    return {**env, "BOXGUARD_LOG_LEVEL": "warning", "BOXGUARD_MAX_NEW_TOKENS": "40"}


def _refused(*flags: str) -> str:
    """Run serve, expecting exit 2 with one line on stderr; returns that line."""
    done = subprocess.run([*SERVE, *flags], capture_output=True, text=True, timeout=180, env=_env())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def served(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """A `boxguard serve` process on a free port; yields (base URL, port)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = ["--model", str(tiny_checkpoint), "--port", str(port), "--model-name", "flagged"]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = subprocess.Popen(
        [*SERVE, *flags, "--max-batch-size", "2", "--no-visual-check"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"serve did not become ready: {log.read_text()[-2000:]}")
        time.sleep(0.25)
    yield url, port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0


def test_flags_reach_the_server(served: tuple[str, int]) -> None:
    url, _ = served
    ready = httpx.get(url + "/readyz", timeout=10).json()
    health = httpx.get(url + "/healthz", timeout=10).json()
    assert ready["model"] == health["model"] == "flagged"
    assert ready["backend"] == health["backend"] == "transformers"


def test_a_port_in_use_is_one_line(served: tuple[str, int]) -> None:
    _, port = served
    started = time.monotonic()
    line = _refused("--port", str(port))
    assert f"127.0.0.1:{port} is already in use" in line and "--port" in line
    assert time.monotonic() - started < 60  # refused before any model is loaded


def test_a_model_directory_without_config_json_is_one_line(tmp_path: Path) -> None:
    line = _refused("--model", str(tmp_path), "--port", "0")
    assert "no config.json" in line and str(tmp_path) in line


def test_a_bad_setting_names_flag_and_env_var() -> None:
    line = _refused("--max-new-tokens", "4", "--port", "0")
    assert line.startswith("error: --max-new-tokens (BOXGUARD_MAX_NEW_TOKENS): ")


def test_device_cuda_without_a_gpu_is_one_line() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    line = _refused("--device", "cuda", "--port", "0")
    assert "no CUDA GPU" in line


def test_backend_vllm_without_vllm_is_one_line(tiny_checkpoint: Path) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    line = _refused("--backend", "vllm", "--model", str(tiny_checkpoint), "--port", "0")
    assert 'pip install "boxguard[vllm]"' in line and "--backend vllm" in line


@pytest.mark.timeout(120)  # fails, not hangs, if the line never comes
def test_port_0_logs_the_port_it_took(tiny_checkpoint: Path) -> None:
    env = {**_env(), "BOXGUARD_LOG_LEVEL": "info"}
    proc = subprocess.Popen(
        [*SERVE, "--model", str(tiny_checkpoint), "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # the line comes right after the bind, before the model loads
            if "listening on http://127.0.0.1:" in line:
                url = line.split("listening on ")[1].strip()
                break
        assert url is not None and not url.endswith(":0")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                assert httpx.get(url + "/healthz", timeout=2).status_code == 200
                return
            except httpx.HTTPError:
                time.sleep(0.25)
        pytest.fail(f"nothing answered on {url}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
