"""The gateway's deployments: compose profile `gateway` and Kubernetes overlay `gateway`.

Both run boxguard --backend openai (the CPU image, no model) in front of a vLLM server with the
flags the parity test uses, with settings that are real boxguard settings and parse.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from boxguard.server.settings import Settings
from docker_support import DOCKER_DIR, compose_env, run_cmd

yaml = pytest.importorskip("yaml")


def _settings(env: dict[str, str]) -> Settings:
    """The BOXGUARD_* variables as Settings (unknown names fail)."""
    fields = {name.upper() for name in Settings.model_fields}
    values = {k.removeprefix("BOXGUARD_").lower(): v for k, v in env.items()}
    assert {k.upper() for k in values} <= fields, set(values) - {f.lower() for f in fields}
    return Settings(**values)


def test_compose_gateway_profile_fronts_vllm(compose_cmd: list[str]) -> None:
    cmd = [*compose_cmd, "-f", str(DOCKER_DIR / "compose.yaml"), "--profile", "gateway"]
    result = run_cmd([*cmd, "config", "--format", "json"], env=compose_env())
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    gateway, vllm = services["boxguard-gateway"], services["vllm"]
    settings = _settings(gateway["environment"])
    assert settings.backend == "openai" and settings.upstream_url == "http://vllm:8000/v1"
    assert settings.family == "qwen2_5_vl"
    assert (
        settings.upstream_model == vllm["command"][vllm["command"].index("--served-model-name") + 1]
    )
    assert gateway["depends_on"]["vllm"]["condition"] == "service_healthy"
    flags = " ".join(vllm["command"])
    assert "--logprobs-mode processed_logprobs" in flags and "--generation-config vllm" in flags
    for service in (gateway, vllm):
        assert (
            service["restart"] == "always" and "memory" in service["deploy"]["resources"]["limits"]
        )
    assert "boxguard" in gateway["networks"]["default"]["aliases"]  # Prometheus scrapes it


def test_k8s_gateway_overlay(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip('kubectl not found: pip install -e ".[dev]"')
    tree = tmp_path / "k8s"
    shutil.copytree(DOCKER_DIR / "k8s", tree, ignore=shutil.ignore_patterns("api-keys.env"))
    (tree / "base" / "api-keys.env").write_text("BOXGUARD_API_KEYS=k8s-test-key\n")
    done = subprocess.run(
        [kubectl, "kustomize", str(tree / "overlays" / "gateway")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    settings = _settings(config["data"])
    assert settings.backend == "openai" and settings.family == "qwen2_5_vl"
    assert settings.upstream_url and settings.upstream_url.endswith(":8000/v1")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "boxguard:cpu"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    upstream = [
        rule
        for rule in policy["spec"]["egress"]
        if {"port": 8000, "protocol": "TCP"} in rule.get("ports", [])
    ]
    assert upstream and upstream[0]["to"][0]["podSelector"]["matchLabels"] == {
        "boxguard-upstream": "true"
    }
