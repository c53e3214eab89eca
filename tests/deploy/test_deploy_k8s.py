"""Checks of deploy/k8s: every manifest parses and has what the Kubernetes API requires of its kind;
the objects agree with each other (selectors, named ports, volumes, the ConfigMap key, the PVC)
and with prewarmd (its flags, its ports, its health service); the ConfigMap's JSON is a config
prewarmd accepts (checked by starting the real prewarmd with it); the PrometheusRule carries
exactly deploy/prometheus/alerts.yml; kustomize renders the folder (when kubectl is installed).

No Kubernetes API server is available here, so the API's own validation (kubectl apply
--dry-run=server) cannot run; the structural checks below stand in for the parts of it that
matter to this deployment."""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import deploy_helpers as h

KIND_API = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict[str, Any]]]:
    return h.load_manifests(h.K8S)


@pytest.fixture(scope="module")
def deployment(manifests: dict) -> dict[str, Any]:
    return h.one(manifests, "Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_every_manifest_has_api_version_kind_and_name(manifests: dict) -> None:
    assert manifests
    for path, docs in manifests.items():
        assert docs, f"{path} is empty"
        for doc in docs:
            kind = doc.get("kind")
            assert kind in KIND_API, f"{path}: unexpected kind {kind!r}"
            assert doc.get("apiVersion") == KIND_API[kind], f"{path}: {kind} apiVersion"
            name = doc.get("metadata", {}).get("name", "")
            assert DNS_SUBDOMAIN.match(name) and len(name) <= 63, f"{path}: name {name!r}"
            # Namespaced objects get theirs from kustomization.yaml, consistently.
            assert "namespace" not in doc["metadata"], f"{path}: set the namespace in kustomize"
            for key, value in doc["metadata"].get("labels", {}).items():
                assert isinstance(value, str), f"{path}: label {key} must be a string"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((h.K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    files = sorted(p.name for p in h.K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(resources) == files
    namespace = h.one(h.load_manifests(h.K8S), "Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    # The image set there is the Deployment's.
    (image,) = kustomization["images"]
    assert image["name"] == "prewarmd"


def test_deployment_spec(deployment: dict, container: dict) -> None:
    spec = deployment["spec"]
    # One writer of the SQLite store on a ReadWriteOnce volume: one replica, never two at once.
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items()
    assert container["image"].split(":")[0] == "prewarmd"
    for field in ("name", "image", "ports", "args", "resources", "securityContext",
                  "livenessProbe", "readinessProbe", "volumeMounts"):
        assert field in container, field


def test_container_runs_non_root_on_a_read_only_root(deployment: dict, container: dict) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # The image's user (deploy/docker/Dockerfile) is the pod's.
    dockerfile = h.DOCKERFILE.read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" \
        in dockerfile


def test_resources_are_valid_quantities(container: dict) -> None:
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    for group in resources.values():
        for value in group.values():
            assert QUANTITY.match(str(value)), value


def test_container_ports_are_named_and_are_prewarmds(container: dict) -> None:
    config = h.configmap_config()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name in ports:
        assert PORT_NAME.match(name) and len(name) <= 15, name
    assert ports == {"grpc": h.port_of(config["grpc_address"]),
                     "metrics": h.port_of(config["metrics_address"])}


def test_service_targets_the_named_container_ports(manifests: dict, deployment: dict,
                                                   container: dict) -> None:
    service = h.one(manifests, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == {"grpc", "metrics"}
    for name, port in service_ports.items():
        assert port["targetPort"] in container_ports, name
        assert port["port"] == container_ports[port["targetPort"]], name
    assert service_ports["grpc"]["appProtocol"] == "grpc"


def test_probes_use_the_grpc_health_service(container: dict) -> None:
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    # The service name prewarmd marks SERVING (server/server.cc).
    server = (h.REPO / "server" / "server.cc").read_text()
    service = container["readinessProbe"]["grpc"]["service"]
    assert f'kServiceName[] = "{service}"' in server


def test_args_are_real_flags_and_the_config_is_mounted(deployment: dict, container: dict) -> None:
    flags = h.prewarmd_flags()
    args = dict(a[2:].split("=", 1) for a in container["args"])
    assert set(args) <= flags, set(args) - flags
    config_path = args["config"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert set(mounts) == set(volumes)
    config_mount = mounts["config"]
    assert config_mount["readOnly"] is True
    assert posixpath.dirname(config_path) == config_mount["mountPath"]
    cm = h.one(h.load_manifests(h.K8S), "ConfigMap")
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert posixpath.basename(config_path) in cm["data"]


def test_store_is_on_the_pvc(deployment: dict, container: dict, manifests: dict) -> None:
    pvc = h.one(manifests, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert QUANTITY.match(pvc["spec"]["resources"]["requests"]["storage"])
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claimed = [n for n, v in volumes.items() if "persistentVolumeClaim" in v]
    assert len(claimed) == 1
    assert volumes[claimed[0]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    store = h.configmap_config()["store_path"]
    assert posixpath.dirname(store) == mounts[claimed[0]]
    # Everything else the process writes goes to an emptyDir (the root is read-only).
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    tmp = env["SQLITE_TMPDIR"]
    assert "emptyDir" in volumes[next(n for n, p in mounts.items() if p == tmp)]


def test_configmap_config_listens_in_the_pod_and_allows_cluster_names() -> None:
    config = h.configmap_config()
    assert config["grpc_address"].startswith("0.0.0.0:")
    assert config["metrics_address"].startswith("0.0.0.0:")
    assert config["allowlist"] == ["*.svc.cluster.local"]
    for service in config["services"]:
        host = re.match(r"https?://([^/:]+)", service["warmup_url"]).group(1)
        assert host.endswith(".svc.cluster.local"), host


def test_servicemonitor_scrapes_the_metrics_port(manifests: dict) -> None:
    monitor = h.one(manifests, "ServiceMonitor")
    service = h.one(manifests, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert endpoint.get("path", "/metrics") == "/metrics"
    # The Prometheus Operator names the job after the Service: the job the rules expect.
    assert service["metadata"]["name"] == h.JOB


def test_prometheusrule_is_alerts_yml(manifests: dict) -> None:
    rule = h.one(manifests, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(h.ALERTS.read_text())["groups"]


def test_prewarmd_accepts_the_configmap_config(tmp_path: Path) -> None:
    """Starts the real prewarmd with the ConfigMap's JSON as --config, with loopback addresses and
    a temporary store given as flags (flags win over the file), and checks it serves and has
    registered the configured services."""
    h.harness.require_build_products()
    config_path = tmp_path / "prewarmd.json"
    cm = h.one(h.load_manifests(h.K8S), "ConfigMap")
    (text,) = cm["data"].values()
    config_path.write_text(text)
    server = h.harness.Prewarmd(tmp_path / "prewarmd", args=[f"--config={config_path}"])
    with server:
        client = server.client()
        listed = client.ListServices(h.harness.pb2.ListServicesRequest())
        names = sorted(s.name for s in listed.services)
        assert names == sorted(s["name"] for s in json.loads(text)["services"])
        assert "prewarm_registered_services" in server.metrics_text()


def test_prewarmd_rejects_a_misspelt_config_field(tmp_path: Path) -> None:
    """The check above means something: prewarmd refuses a config with an unknown field."""
    h.harness.require_build_products()
    config = h.configmap_config()
    config["alowlist"] = config.pop("allowlist")
    config_path = tmp_path / "bad.json"
    config_path.write_text(json.dumps(config))
    result = h.run([str(h.harness.prewarmd_binary()), f"--config={config_path}",
                    "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                    f"--store={tmp_path / 'p.db'}"], timeout=20)
    assert result.returncode == 2, result.stderr
    assert "alowlist" in result.stderr


def test_kustomize_renders_the_folder() -> None:
    kubectl = h.require_tool("kubectl", optional=True)
    result = h.run([kubectl, "kustomize", str(h.K8S)], timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(KIND_API), kinds
    namespace = yaml.safe_load((h.K8S / "kustomization.yaml").read_text())["namespace"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "prewarm"
