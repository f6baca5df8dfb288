"""The compose `scale` profile for real: 2 CPU replicas behind HAProxy, load through the balancer
with the SDK, one replica `docker kill`ed mid-run and started again.

It checks what a user of a scaled deployment relies on: no request fails at the SDK (which
retries connection errors and 503), HAProxy stops routing to the dead replica within its
health-check budget and routes to it again once its /readyz answers, and Prometheus scrapes every
replica. The figures it prints are recorded in bench/results/scale.md.

Needs what tests/docker/test_docker.py needs (a Docker engine, the CPU image) plus network access
to the Debian archive while building the HAProxy and Prometheus images.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docker_support import (
    COMPOSE_FILE,
    DOCKER_DIR,
    compose_env,
    free_port,
    run_cmd,
    timed,
)

pytestmark = pytest.mark.docker

HAPROXY_CFG = DOCKER_DIR / "haproxy" / "haproxy.cfg"
HAPROXY_IMAGE = "boxguard/haproxy:bookworm"
PROMETHEUS_IMAGE = "boxguard/prometheus:bookworm"
REPLICAS = 2
SERVICES = ("boxguard-replica", "haproxy", "prometheus")  # Grafana needs a registry: left out
CONCURRENCY = 4


# --- static checks -----------------------------------------------------------------------------


def test_compose_scale_profile(compose_cmd: list[str]) -> None:
    cmd = [*compose_cmd, "-f", str(COMPOSE_FILE), "--profile", "scale", "config", "--format"]
    result = run_cmd([*cmd, "json"], env=compose_env())
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"boxguard-replica", "haproxy", "prometheus", "grafana"}
    replica, haproxy = services["boxguard-replica"], services["haproxy"]
    assert replica["profiles"] == haproxy["profiles"] == ["scale"]
    assert replica["deploy"]["replicas"] == REPLICAS
    assert replica["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert "ports" not in replica, "replicas are reached through the balancer only"
    assert replica["read_only"] is True and set(replica["tmpfs"]) == {"/tmp", "/cache"}
    # HAProxy and Prometheus find every replica through this alias.
    assert "boxguard" in replica["networks"]["default"]["aliases"]
    assert haproxy["build"]["dockerfile"] == "docker/Dockerfile.haproxy"
    assert {p["target"] for p in haproxy["ports"]} == {8000, 8404}
    env = {**compose_env(), "BOXGUARD_REPLICAS": "5"}
    result = run_cmd([*cmd, "json"], env=env)
    assert json.loads(result.stdout)["services"]["boxguard-replica"]["deploy"]["replicas"] == 5


def _match(pattern: str, text: str) -> re.Match[str]:
    """The first match of pattern (multi-line mode); fails the test when there is none."""
    found = re.search(pattern, text, re.M)
    assert found is not None, f"{pattern!r} not found"
    return found


def _haproxy_settings() -> dict[str, float]:
    """Health-check timing from haproxy.cfg: inter, fall, rise (count) and timeout check (s)."""
    text = HAPROXY_CFG.read_text()
    default_server = _match(r"^\s*default-server (.+)$", text).group(1).split()
    options = dict(zip(default_server, default_server[1:], strict=False))  # "inter" -> "1s"
    seconds = {"ms": 0.001, "s": 1.0}

    def duration(value: str) -> float:
        number, unit = _match(r"^(\d+)(ms|s)$", value).groups()
        return int(number) * seconds[unit]

    check_timeout = _match(r"^\s*timeout check (\S+)$", text).group(1)
    return {
        "inter": duration(options["inter"]),
        "fall": int(options["fall"]),
        "rise": int(options["rise"]),
        "timeout_check": duration(check_timeout),
    }


def test_haproxy_checks_readyz_actively() -> None:
    text = HAPROXY_CFG.read_text()
    assert re.search(r"http-check send meth GET uri /readyz", text)
    assert re.search(r"http-check expect status 200", text)
    assert re.search(r"server-template \w+ 1-\d+ boxguard:8000 .*resolvers docker", text)
    timing = _haproxy_settings()
    assert timing["inter"] <= 1 and timing["fall"] <= 3 and timing["rise"] <= 3
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        pytest.skip("haproxy not installed here: the image build checks the config instead")
    errors = DOCKER_DIR / "haproxy" / "errors"
    config = text.replace("/usr/local/etc/haproxy/errors", str(errors))
    result = run_cmd([haproxy, "-c", "-f", "/dev/stdin"], input=config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_bounds_slow_and_idle_clients_like_the_server() -> None:
    """Header and keep-alive timeouts no longer than boxguard's defaults, and fewer connections
    per replica than a replica accepts (the rest queue in HAProxy)."""
    pytest.importorskip("pydantic_settings")
    from boxguard.server.settings import Settings

    text = HAPROXY_CFG.read_text()
    defaults = Settings()
    header = _match(r"^\s*timeout http-request (\d+)s$", text).group(1)
    keep_alive = _match(r"^\s*timeout http-keep-alive (\d+)s$", text).group(1)
    assert 0 < int(header) <= defaults.header_timeout_s
    assert 0 < int(keep_alive) <= defaults.keep_alive_timeout_s
    per_replica = _match(r"^\s*default-server .*\bmaxconn (\d+)", text).group(1)
    assert int(per_replica) < defaults.max_connections
    assert _match(r"^frontend boxguard\n(?:\s+.*\n)*?\s+maxconn (\d+)$", text)


def test_haproxy_errors_are_boxguard_problems() -> None:
    """What the balancer itself answers is a problem+json the SDK understands (503 retried)."""
    for name, status, code in (
        ("503", 503, "backend_unavailable"),
        ("504", 504, "generation_timeout"),
    ):
        raw = (DOCKER_DIR / "haproxy" / "errors" / f"{name}.http").read_bytes()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith(f"HTTP/1.1 {status} ")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["Content-Type"] == "application/problem+json"
        problem = json.loads(body)
        assert (problem["status"], problem["code"]) == (status, code)
        if status == 503:
            assert int(headers["Retry-After"]) >= 1


# --- the stack, for real ---------------------------------------------------------------------


@dataclass
class Stack:
    """A running scale profile: its compose command and the loopback URLs of its ports."""

    compose: list[str]
    env: dict[str, str]
    url: str
    stats_url: str
    prometheus_url: str
    timings: dict[str, float] = field(default_factory=dict)

    def replica_ids(self) -> list[str]:
        result = run_cmd([*self.compose, "ps", "-q", "boxguard-replica"], env=self.env)
        return sorted(result.stdout.split())


def _stats(stats_url: str) -> list[dict[str, str]]:
    """HAProxy's server rows of backend boxguard (the ;csv form of its stats page)."""
    import httpx

    text = httpx.get(f"{stats_url}/stats;csv", timeout=2).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return [r for r in rows if r["pxname"] == "boxguard" and r["svname"].startswith("replica")]


def _up_addresses(stats_url: str) -> set[str]:
    """Replica addresses HAProxy routes to now."""
    with contextlib.suppress(Exception):
        return {r["addr"] for r in _stats(stats_url) if r["status"] == "UP"}
    return set()


def _wait(what: str, predicate: Any, timeout: float, interval: float = 0.1) -> float:
    """Poll until predicate() is true; the monotonic time it turned true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return time.monotonic()


def _address(docker: str, container: str) -> str:
    """host:port HAProxy uses for a replica container."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    ip = run_cmd([docker, "inspect", "--format", template, container]).stdout.strip()
    return f"{ip}:8000"


@pytest.fixture(scope="module")
def scale_stack(docker_engine: str, cpu_image: str, compose_cmd: list[str]) -> Iterator[Stack]:
    """The scale profile with 2 replicas, HAProxy and Prometheus; torn down after."""
    docker = docker_engine
    timings: dict[str, float] = {}
    for image, dockerfile in ((HAPROXY_IMAGE, "haproxy"), (PROMETHEUS_IMAGE, "prometheus")):
        build = [docker, "build", "-f", f"docker/Dockerfile.{dockerfile}", "-t", image, "."]
        timed(f"{dockerfile} image build", timings, build, 900)
    ports = {name: free_port() for name in ("http", "stats", "prometheus")}
    env = {
        **compose_env(),
        "BOXGUARD_REPLICAS": str(REPLICAS),
        "BOXGUARD_HOST_PORT": str(ports["http"]),
        "BOXGUARD_HAPROXY_STATS_PORT": str(ports["stats"]),
        "BOXGUARD_PROMETHEUS_PORT": str(ports["prometheus"]),
        "BOXGUARD_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
    }
    project = f"boxguard-scale-test-{os.getpid()}"
    compose = [*compose_cmd, "-f", str(COMPOSE_FILE), "-p", project, "--profile", "scale"]
    stack = Stack(
        compose=compose,
        env=env,
        url=f"http://127.0.0.1:{ports['http']}",
        stats_url=f"http://127.0.0.1:{ports['stats']}",
        prometheus_url=f"http://127.0.0.1:{ports['prometheus']}",
        timings=timings,
    )
    try:
        start = time.monotonic()
        up = [*compose, "up", "-d", "--no-build", "--pull", "never", *SERVICES]
        timed("compose up", timings, up, 300, env=env)
        _wait(
            f"{REPLICAS} replicas UP in HAProxy",
            lambda: len(_up_addresses(stack.stats_url)) == REPLICAS,
            timeout=240,
        )
        timings["stack ready"] = round(time.monotonic() - start, 1)
        yield stack
    finally:
        logs = run_cmd([*compose, "logs", "--tail", "30", "--no-color"], env=env, timeout=60)
        print(logs.stdout[-6000:])
        run_cmd([*compose, "down", "-v", "--remove-orphans", "-t", "5"], env=env, timeout=180)


@dataclass
class Load:
    """SDK requests sent through the balancer by a few threads until stopped."""

    url: str
    done: list[tuple[float, float]] = field(default_factory=list)  # (start, end) per success
    failures: list[str] = field(default_factory=list)
    attempts: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self) -> None:
        import httpx
        from boxguard.clients import Client
        from boxguard.clients.errors import BoxguardError
        from PIL import Image, ImageDraw

        load = self

        class CountingTransport(httpx.HTTPTransport):
            """Counts HTTP attempts, so SDK retries show as attempts - requests."""

            def handle_request(self, request: httpx.Request) -> httpx.Response:
                with load.lock:
                    load.attempts += 1
                return super().handle_request(request)

        image = Image.new("RGB", (320, 240), "white")
        ImageDraw.Draw(image).ellipse((100, 60, 200, 160), fill="red")
        with Client(
            self.url, timeout=60, retries=8, backoff=0.25, transport=CountingTransport()
        ) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    result = client.ground(image, "the red circle")
                    assert result.status in ("accepted", "abstained")
                except (BoxguardError, AssertionError) as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    self.done.append((start, time.monotonic()))

    def count(self) -> int:
        with self.lock:
            return len(self.done)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_killed_replica_drops_out_and_comes_back(docker_engine: str, scale_stack: Stack) -> None:
    import httpx

    docker, stack = docker_engine, scale_stack
    timing = _haproxy_settings()
    replicas = stack.replica_ids()
    assert len(replicas) == REPLICAS
    victim = replicas[0]
    victim_addr = _address(docker, victim)
    assert _up_addresses(stack.stats_url) == {_address(docker, r) for r in replicas}

    load = Load(stack.url)
    threads = [threading.Thread(target=load.worker, daemon=True) for _ in range(CONCURRENCY)]
    run_start = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        _wait("warm-up requests", lambda: load.count() >= 12, timeout=180)
        served_before = {r["addr"]: int(r["stot"]) for r in _stats(stack.stats_url)}
        assert served_before.get(victim_addr, 0) > 0, "the victim served nothing before the kill"

        assert run_cmd([docker, "kill", victim]).returncode == 0
        killed = time.monotonic()
        gone = _wait(
            "HAProxy to stop routing to the killed replica",
            lambda: victim_addr not in _up_addresses(stack.stats_url),
            timeout=30,
        )
        # The survivor carries the load alone for a while.
        during = load.count()
        time.sleep(5)
        assert load.count() > during, "no request completed while one replica was down"

        assert run_cmd([docker, "start", victim]).returncode == 0
        restarted = time.monotonic()
        victim_addr = _address(docker, victim)  # Docker may hand out another address

        def victim_ready() -> bool:
            probe = [docker, "exec", victim, "python", "/usr/local/lib/boxguard/healthcheck.py"]
            return run_cmd(probe, timeout=30).returncode == 0

        ready = _wait("the restarted replica's /readyz", victim_ready, timeout=240, interval=0.2)
        back = _wait(
            "HAProxy to route to the restarted replica",
            lambda: victim_addr in _up_addresses(stack.stats_url),
            timeout=60,
        )
        served_at_return = {r["addr"]: int(r["stot"]) for r in _stats(stack.stats_url)}
        _wait(
            "requests on the restarted replica",
            lambda: (
                int(next(r["stot"] for r in _stats(stack.stats_url) if r["addr"] == victim_addr))
                >= served_at_return.get(victim_addr, 0) + 3
            ),
            timeout=120,
        )
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=90)
    run_s = time.monotonic() - run_start
    backend = next(
        r
        for r in csv.DictReader(
            io.StringIO(httpx.get(f"{stack.stats_url}/stats;csv", timeout=5).text.lstrip("# "))
        )
        if r["pxname"] == "boxguard" and r["svname"] == "BACKEND"
    )

    # Zero failed requests at the SDK, through a kill and a restart.
    assert not load.failures, load.failures[:5]
    # Detection: `fall` failed checks `inter` apart, each given up to `timeout check`.
    detect_bound = timing["fall"] * timing["inter"] + timing["timeout_check"] + 1.0
    assert gone - killed <= detect_bound, f"{gone - killed:.2f}s > {detect_bound}s"
    # Return: `rise` passing checks after /readyz answers (each up to `inter` apart), + polling.
    return_bound = timing["rise"] * timing["inter"] + 1.5
    assert back - ready <= return_bound, f"{back - ready:.2f}s > {return_bound}s"
    assert back >= restarted

    # Prometheus scrapes every replica (DNS discovery refreshes every 5 s, scrapes every 5 s).
    def scraped() -> dict[str, float]:
        query = 'sum by (instance) (boxguard_requests_total{job="boxguard"})'
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            answer = httpx.get(
                f"{stack.prometheus_url}/api/v1/query", params={"query": query}, timeout=5
            ).json()
            return {r["metric"]["instance"]: float(r["value"][1]) for r in answer["data"]["result"]}
        return {}

    addresses = {_address(docker, r) for r in replicas}
    _wait(
        "Prometheus to scrape every replica",
        lambda: set(scraped()) == addresses and all(v > 0 for v in scraped().values()),
        timeout=60,
        interval=1,
    )

    # What HAProxy answered the clients: a non-200 here is a retry the SDK had to make.
    log = run_cmd([*stack.compose, "logs", "--no-color", "haproxy"], env=stack.env).stdout
    ground_lines = [line for line in log.splitlines() if '"POST /ground' in line]
    answers = [_match(r" boxguard/\S+ \S+ (-?\d+) ", line).group(1) for line in ground_lines]
    latencies = sorted(end - start for start, end in load.done)
    summary = {
        "requests": len(load.done),
        "failed": len(load.failures),
        "sdk_attempts": load.attempts,
        "sdk_retries": load.attempts - len(load.done),
        "haproxy_retries": int(backend["wretr"] or 0),
        "haproxy_redispatches": int(backend["wredis"] or 0),
        "haproxy_answers": {code: answers.count(code) for code in sorted(set(answers))},
        "haproxy_not_200": [
            line.split("| ", 1)[-1] for line in ground_lines if " 200 " not in line
        ],
        "load_average_1m": round(os.getloadavg()[0], 1),
        "run_s": round(run_s, 1),
        "throughput_rps": round(len(load.done) / run_s, 2),
        "p50_s": round(latencies[len(latencies) // 2], 3),
        "p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
        "max_s": round(latencies[-1], 3),
        "kill_to_out_s": round(gone - killed, 2),
        "restart_to_ready_s": round(ready - restarted, 2),
        "ready_to_in_s": round(back - ready, 2),
        "served_per_replica": {a: int(n) for a, n in served_before.items() if int(n)},
        **{f"{k} (s)": v for k, v in stack.timings.items()},
    }
    print("scale test:", json.dumps(summary))
    report = os.environ.get("BOXGUARD_SCALE_REPORT")  # a JSON file for bench/results/scale.md
    if report:
        Path(report).write_text(json.dumps(summary, indent=2) + "\n")
