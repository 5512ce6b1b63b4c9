"""The cluster configs in cluster/ are valid and keep their security settings.

Launcher YAML goes through Ray's own preparation and schema (what `ray up` runs before it
touches a cloud); KubeRay manifests through a field whitelist taken from the KubeRay v1.6 CRD
(no CRD file offline); serveConfigV2 through Serve's schema and our ServeArgs. No cluster,
no cloud account, nothing downloaded.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private import providers
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER = ["aws.yaml", "gcp.yaml", "aliyun.yaml", "onprem.yaml", "onprem-coordinator.yaml"]
CLOUD = ["aws.yaml", "gcp.yaml", "aliyun.yaml"]
TOKEN_PATH = "$HOME/.inhouse/ray_auth_token"
RAY_PIN = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CLUSTER / name).read_text())
    return data


def ray_up_checks(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `ray up` does to a config before any cloud call: prepare, then validate."""
    if config["provider"]["type"] == "aliyun":
        # The Ray 2.60 wheel lacks aliyun/defaults.yaml (cluster/aliyun.yaml says so); the
        # documented workaround uses our complete file as its own defaults.
        monkeypatch.setitem(
            providers._DEFAULT_CONFIGS, "aliyun", lambda: str(CLUSTER / "aliyun.yaml")
        )
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_config_passes_rays_validation(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = ray_up_checks(load(name), monkeypatch)
    assert prepared["idle_timeout_minutes"] > 0
    for node_type, spec in prepared["available_node_types"].items():
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= prepared["max_workers"], node_type


SCHEMA = jsonschema.ValidationError
GPU_TYPE = ["available_node_types", "gpu-g5"]


@pytest.mark.parametrize(
    ("path", "key", "value", "error"),
    [
        ([], "idle_timout_minutes", 5, SCHEMA),
        (GPU_TYPE, "max_worker", 4, SCHEMA),
        (["auth"], "ssh_usr", "ubuntu", SCHEMA),
        ([*GPU_TYPE, "resources"], "GPU", -1, SCHEMA),
        ([], "head_node_type", "hed", ValueError),
    ],
    ids=["misspelt-top-level", "misspelt-node-type", "misspelt-auth", "negative-gpu", "no-head"],
)
def test_rays_validation_rejects_broken_configs(
    path: list[str], key: str, value: Any, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load("aws.yaml")
    target = config
    for step in path:
        target = target[step]
    target[key] = value
    with pytest.raises(error):
        ray_up_checks(config, monkeypatch)


@pytest.mark.parametrize("name", LAUNCHER)
def test_every_node_runs_ray_with_the_clusters_token(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ray_up_checks(load(name), monkeypatch)
    assert config["file_mounts"]["~/.inhouse/ray_auth_token"] == (
        f"~/.inhouse/cluster-tokens/{config['cluster_name']}"
    )
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2
    for command in ray_starts:
        assert f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={TOKEN_PATH} ray start" in command
        assert "--disable-usage-stats" in command
    # Every shell Ray opens on a node (setup, `ray exec`) gets the same settings.
    assert any(f"RAY_AUTH_TOKEN_PATH={TOKEN_PATH}" in c for c in config["initialization_commands"])


@pytest.mark.parametrize("name", LAUNCHER)
def test_dashboard_only_on_the_heads_loopback(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ray_up_checks(load(name), monkeypatch)
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    commands = [c for key, value in config.items() if key.endswith("_commands") for c in value]
    assert not any("0.0.0.0" in c for c in commands)
    gcs = re.search(r"--port=(\d+)", head)
    assert gcs and f"--address=$RAY_HEAD_IP:{gcs.group(1)}" in " ".join(
        config["worker_start_ray_commands"]
    )


@pytest.mark.parametrize("name", LAUNCHER)
def test_every_node_installs_the_project_with_the_pins(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ray_up_checks(load(name), monkeypatch)
    assert config["file_mounts"]["~/inhouse-dist"] == "./dist"
    install = "pip install --quiet -c ~/inhouse-dist/constraints.txt ~/inhouse-dist/inhouse-*.whl"
    # prepare_config merged setup_commands into both lists: head and workers alike.
    assert any(install in c for c in config["head_setup_commands"])
    assert any(install in c for c in config["worker_setup_commands"])


@pytest.mark.parametrize("name", CLOUD)
def test_cloud_groups_cpu_head_and_gpu_workers(name: str) -> None:
    config = load(name)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["GPU"] == 0
    gpu = [
        t for n, t in types.items() if n != config["head_node_type"] and t["resources"].get("GPU")
    ]
    assert len(gpu) >= 2 and all(t["min_workers"] == 0 for t in gpu)


def test_aws_keeps_ssh_private_and_offers_spot() -> None:
    types = load("aws.yaml")["available_node_types"]
    for name, spec in types.items():
        node = spec["node_config"]
        # Our own security group: Ray's default one opens SSH to 0.0.0.0/0.
        assert node["SecurityGroupIds"], name
        assert node["MetadataOptions"]["HttpTokens"] == "required", name
        assert all(d["Ebs"]["Encrypted"] for d in node["BlockDeviceMappings"]), name
    instance_types = {s["node_config"]["InstanceType"] for s in types.values()}
    assert {"p4d.24xlarge", "g5.2xlarge"} <= instance_types
    spot = {
        s["node_config"]["InstanceType"]
        for s in types.values()
        if s["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    }
    assert spot == {"p4d.24xlarge", "g5.2xlarge"}


def test_gcp_uses_its_own_network_and_a_valid_tpu_type() -> None:
    types = load("gcp.yaml")["available_node_types"]
    tpus = {n: t for n, t in types.items() if "acceleratorType" in t["node_config"]}
    for name, spec in types.items():
        node = spec["node_config"]
        if name in tpus:
            # The rules of Ray's GCP provider (get_node_type, _validate_tpu_config).
            assert "machineType" not in node and "acceleratorConfig" not in node
            assert re.fullmatch(r"v\d+[a-z]*-\d+", node["acceleratorType"])
            assert node["runtimeVersion"] and spec["resources"]["TPU"] > 0
            assert "inhouse" in node["networkConfig"]["subnetwork"]
        else:
            assert node["networkInterfaces"][0]["subnetwork"].endswith("/inhouse-us-central1")
            assert node["tags"]["items"] == ["inhouse-ray"]
    assert len(tpus) == 1
    assert {t["node_config"].get("machineType") for t in types.values()} >= {"a2-highgpu-1g"}


def test_aliyun_opens_only_ssh_and_holds_no_keys() -> None:
    provider = load("aliyun.yaml")["provider"]
    for rule in provider["security_group_rule"]:
        assert rule["port_range"] == "22/22" and rule["source_cidr_ip"] != "0.0.0.0/0"
    assert provider["access_key"] == "${ALIBABA_CLOUD_ACCESS_KEY_ID}"
    assert provider["access_key_secret"] == "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}"


def test_node_shell_setup_gives_token_auth_and_refuses_a_missing_token(tmp_path: Path) -> None:
    """Run the real initialization and token-check commands in bash with a scratch HOME."""
    config = load("aws.yaml")
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True)

    (tmp_path / ".bashrc").write_text("")
    for _ in range(2):  # idempotent: `ray up` runs it again on every update
        for command in config["initialization_commands"]:
            assert sh(command).returncode == 0
    assert (tmp_path / ".bashrc").read_text().count("inhouse cluster env") == 1
    shown = sh("source ~/.bashrc; echo $RAY_AUTH_MODE $RAY_AUTH_TOKEN_PATH").stdout.split()
    assert shown == ["token", f"{tmp_path}/.inhouse/ray_auth_token"]

    check = config["setup_commands"][0]
    token = tmp_path / ".inhouse" / "ray_auth_token"
    token.parent.mkdir()
    token.write_text("")
    assert sh(check).returncode != 0  # an empty token stops the node's setup
    token.write_text("a" * 64)
    token.chmod(0o644)
    assert sh(check).returncode == 0
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_versions_agree_with_the_pins() -> None:
    assert RAY_PIN, "constraints.txt pins ray"
    version = RAY_PIN.group(1)
    for name in ("raycluster.yaml", "rayservice.yaml"):
        for doc in kube_docs(name):
            if doc["kind"] == "RayCluster":
                assert doc["spec"]["rayVersion"] == version
            if doc["kind"] == "RayService":
                assert doc["spec"]["rayClusterConfig"]["rayVersion"] == version
    base = re.search(r"^FROM rayproject/ray:(\S+?)-", (KUBERAY / "Dockerfile").read_text(), re.M)
    assert base and base.group(1) == version


# --- KubeRay manifests ------------------------------------------------------------------

# The fields of KubeRay's ray.io/v1 CRD (v1.6) that a manifest may set.
CRD = {
    kind: set(fields.split())
    for kind, fields in {
        "RayClusterSpec": "headGroupSpec workerGroupSpecs rayVersion enableInTreeAutoscaling"
        " autoscalerOptions headServiceAnnotations suspend managedBy authOptions"
        " gcsFaultToleranceOptions upgradeStrategy",
        "AuthOptions": "mode secretName enableK8sTokenAuth",
        "GcsFaultToleranceOptions": "redisAddress redisPassword redisUsername"
        " externalStorageNamespace",
        "AutoscalerOptions": "resources image imagePullPolicy securityContext idleTimeoutSeconds"
        " upscalingMode version env envFrom volumeMounts",
        "HeadGroupSpec": "template headService enableIngress rayStartParams serviceType",
        "WorkerGroupSpec": "groupName replicas minReplicas maxReplicas idleTimeoutSeconds"
        " rayStartParams template scaleStrategy numOfHosts suspend",
        "RayServiceSpec": "serveConfigV2 rayClusterConfig upgradeStrategy serveService"
        " excludeHeadPodFromServeSvc rayClusterDeletionDelaySeconds",
    }.items()
}
REQUIRED = {"HeadGroupSpec": {"template"}, "WorkerGroupSpec": {"groupName", "template"}}


def kube_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def _fields(kind: str, value: dict[str, Any], where: str) -> list[str]:
    errors = [f"{where}.{k}: not a {kind} field" for k in sorted(set(value) - CRD[kind])]
    return errors + [f"{where}: {kind} needs {k}" for k in REQUIRED.get(kind, set()) - set(value)]


def _pod(template: dict[str, Any], where: str, gpus: bool) -> list[str]:
    spec, errors = template["spec"], []
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for container in spec.get("initContainers", []) + spec["containers"]:
        missing = {m["name"] for m in container.get("volumeMounts", [])} - volumes
        errors += [f"{where}: mounts undefined volume {m}" for m in sorted(missing)]
    ray = spec["containers"][0]
    limits, requests = ray["resources"]["limits"], ray["resources"].get("requests", {})
    if gpus and not int(limits.get("nvidia.com/gpu", 0)) > 0:
        errors.append(f"{where}: GPU group without an nvidia.com/gpu limit")
    if "nvidia.com/gpu" in requests and requests["nvidia.com/gpu"] != limits.get("nvidia.com/gpu"):
        errors.append(f"{where}: GPU request differs from its limit")
    names = {e["name"] for e in ray.get("env", [])}
    errors += [
        f"{where}: no {n}" for n in ("INHOUSE_HOME", "INHOUSE_DATABASE_URL") if n not in names
    ]
    return errors


def check_ray_cluster_spec(spec: dict[str, Any], where: str) -> list[str]:
    """Structural errors of a RayClusterSpec against the CRD fields and our security rules."""
    errors = _fields("RayClusterSpec", spec, where)
    for kind, key in [
        ("AuthOptions", "authOptions"),
        ("AutoscalerOptions", "autoscalerOptions"),
        ("GcsFaultToleranceOptions", "gcsFaultToleranceOptions"),
    ]:
        errors += _fields(kind, spec.get(key) or {}, f"{where}.{key}")
    if spec.get("authOptions", {}).get("mode") != "token" or not spec["authOptions"].get(
        "secretName"
    ):
        errors.append(f"{where}: token authentication with our Secret is off")
    if spec.get("enableInTreeAutoscaling") is not True:
        errors.append(f"{where}: the autoscaler is off")
    options = spec.get("autoscalerOptions", {})
    if options.get("upscalingMode") not in {"Default", "Aggressive", "Conservative"}:
        errors.append(f"{where}: upscalingMode must be Default, Aggressive or Conservative")
    if not isinstance(options.get("idleTimeoutSeconds"), int) or options["idleTimeoutSeconds"] <= 0:
        errors.append(f"{where}: idleTimeoutSeconds must be a positive integer")
    head = spec.get("headGroupSpec", {})
    errors += _fields("HeadGroupSpec", head, f"{where}.headGroupSpec")
    if head.get("serviceType", "ClusterIP") != "ClusterIP" or head.get("enableIngress"):
        errors.append(f"{where}: the head service (dashboard 8265) leaves the cluster")
    if head.get("rayStartParams", {}).get("num-gpus") != "0":
        errors.append(f"{where}: GPU work may land on the head")
    if "template" in head:
        errors += _pod(head["template"], f"{where}.head", gpus=False)
    for group in spec.get("workerGroupSpecs", []):
        at = f"{where}.{group.get('groupName')}"
        errors += _fields("WorkerGroupSpec", group, at)
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if not 0 <= low <= group.get("replicas", 0) <= high:
            errors.append(f"{at}: replicas outside minReplicas..maxReplicas")
        if "template" in group:
            errors += _pod(group["template"], at, gpus="gpu" in group.get("groupName", ""))
    return errors


def check_manifest(doc: dict[str, Any]) -> list[str]:
    """All errors of one Kubernetes object (empty when it is fine)."""
    kind, errors = doc.get("kind"), []
    if kind in {"RayCluster", "RayService"}:
        if doc.get("apiVersion") != "ray.io/v1":
            errors.append(f"{kind}: apiVersion must be ray.io/v1")
        spec = doc.get("spec", {})
        if kind == "RayCluster":
            errors += check_ray_cluster_spec(spec, "spec")
        else:
            errors += _fields("RayServiceSpec", spec, "spec")
            errors += check_ray_cluster_spec(spec.get("rayClusterConfig", {}), "rayClusterConfig")
            if spec.get("upgradeStrategy", {}).get("type") not in {None, "NewCluster", "None"}:
                errors.append("upgradeStrategy.type must be NewCluster or None")
    services = [doc["spec"]] if kind == "Service" else []
    services += (
        [doc["spec"].get("serveService", {}).get("spec", {})] if kind == "RayService" else []
    )
    for service in services:
        if service.get("type", "ClusterIP") in {"LoadBalancer", "NodePort"}:
            errors.append(f"{kind} {doc['metadata']['name']}: exposed outside the cluster")
    if kind == "Ingress":
        errors.append(f"Ingress {doc['metadata']['name']}: none ship with inhouse")
    return errors


KUBE_FILES = sorted(p.name for p in KUBERAY.glob("*.yaml"))


@pytest.mark.parametrize("name", KUBE_FILES)
def test_kubernetes_manifests_pass_the_crd_and_exposure_checks(name: str) -> None:
    docs = kube_docs(name)
    assert docs and all(d["apiVersion"] and d["kind"] and d["metadata"]["name"] for d in docs)
    assert [e for d in docs for e in check_manifest(d)] == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["spec", "enableInTreeAutoscalling"], True, "not a RayClusterSpec field"),
        (["spec", "authOptions", "mode"], "disabled", "token authentication"),
        (["spec", "headGroupSpec", "serviceType"], "LoadBalancer", "leaves the cluster"),
        (["spec", "autoscalerOptions", "upscalingMode"], "Fast", "upscalingMode"),
        (
            [
                "spec",
                "workerGroupSpecs",
                2,
                "template",
                "spec",
                "containers",
                0,
                "resources",
                "limits",
            ],
            {"cpu": "7"},
            "nvidia.com/gpu",
        ),
        (["spec", "workerGroupSpecs", 0, "minReplicas"], 5, "outside minReplicas"),
        (["apiVersion"], "ray.io/v1alpha1", "ray.io/v1"),
    ],
)
def test_manifest_checks_reject_broken_manifests(
    path: list[Any], value: Any, expected: str
) -> None:
    doc = copy.deepcopy(kube_docs("raycluster.yaml")[0])
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(expected in e for e in check_manifest(doc)), check_manifest(doc)


def test_gcs_fault_tolerance_points_at_our_redis() -> None:
    redis = {d["kind"]: d for d in kube_docs("redis.yaml")}
    service = redis["Service"]
    address = f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    password = redis["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"][0]
    specs = [
        kube_docs("raycluster.yaml")[0]["spec"],
        kube_docs("rayservice.yaml")[0]["spec"]["rayClusterConfig"],
    ]
    for spec in specs:
        ft = spec["gcsFaultToleranceOptions"]
        assert ft["redisAddress"] == address
        assert ft["redisPassword"]["valueFrom"] == password["valueFrom"]


def test_network_policy_admits_the_dashboard_only_from_the_operator() -> None:
    policy = kube_docs("networkpolicy.yaml")[0]["spec"]
    for rule in policy["ingress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        source = rule["from"][0]
        if not ports:  # all ports: only from other Ray pods
            assert source["podSelector"]["matchExpressions"][0]["key"] == "ray.io/cluster"
        elif 8265 in ports:
            assert "kubernetes.io/metadata.name" in source["namespaceSelector"]["matchLabels"]
        else:
            assert ports == {8000}


def test_rayservice_deploys_our_serve_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    from inhouse.config import ServeArgs, load_settings

    raw = yaml.safe_load(kube_docs("rayservice.yaml")[0]["spec"]["serveConfigV2"])
    launcher = load("serve.yaml")  # `serve deploy` on launcher clusters: the same app, but
    # launcher nodes bind loopback (plain HTTP) and pods the pod network (NetworkPolicy)
    assert (launcher["http_options"]["host"], raw["http_options"]["host"]) == (
        "127.0.0.1",
        "0.0.0.0",
    )
    assert {**raw, "http_options": launcher["http_options"]} == launcher
    config = ServeDeploySchema.model_validate(raw)  # what `serve deploy` accepts
    assert set(raw) <= set(ServeDeploySchema.model_fields)  # Serve ignores unknown keys
    (app,) = raw["applications"]
    assert set(app) <= set(ServeApplicationSchema.model_fields)
    assert config.http_options.port == 8000
    module, _, attr = app["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    ServeArgs.model_validate(app["args"])  # extra="forbid": a misspelt argument fails here
    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)
    for key, value in app["runtime_env"]["env_vars"].items():
        monkeypatch.setenv(key, value)
    serve = load_settings().serve  # a misspelt INHOUSE_SERVE__* variable fails here
    assert serve.autoscaling and (serve.min_replicas, serve.max_replicas) == (2, 8)
