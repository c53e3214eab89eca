"""deploy/k8s and deploy/knative against the real schemas and the operators' and webhooks' rules
(conformance.py says how): every object kustomize renders from deploy/k8s, and the Knative
Service, must be accepted, and each check must reject a deliberately broken copy.

The schemas are read from ../shared/peer-schemas beside the repository, or from
$PREWARM_PEER_SCHEMAS. A missing one skips the tests that need it with a message naming it; with
CI=true or PREWARM_REQUIRE_BINARIES=1 (CTest) it fails them instead."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import conformance as c
import deploy_helpers as h


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return c.render_k8s()


@pytest.fixture(scope="module")
def ksvc() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((h.KNATIVE / "service.yaml").read_text()) if d]
    return doc


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = c.objects_by_kind(objects, kind)
    return copy.deepcopy(found)


def object_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# -------------------------------------------------------------------------------- rendering


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = h.require_tool("kubectl", optional=True)  # not packaged usefully by Debian 12
    result = h.run([kubectl, "kustomize", str(folder)], timeout=60)
    if result.returncode != 0 and "labels" in result.stderr:
        pytest.skip(f"this kubectl's kustomize is too old for labels: {result.stderr[:200]}")
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_rendering_matches_kubectl_kustomize(rendered: list) -> None:
    """The Python rendering every other test validates is kustomize's own, object for object and
    in its order."""
    assert rendered == kubectl_kustomize(h.K8S)


def test_rendering_applies_namespace_labels_image_and_drops_local_config(rendered: list) -> None:
    kustomization = yaml.safe_load((h.K8S / "kustomization.yaml").read_text())
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(d["kind"] for docs in h.load_manifests(h.K8S).values() for d in docs)
    assert "prewarm-runbooks" not in {o["metadata"]["name"] for o in rendered}
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == kustomization["namespace"], object_id(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "prewarm"
    (image,) = kustomization["images"]
    (container,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"


def test_runbook_base_is_set_from_runbooks_yaml(tmp_path: Path) -> None:
    """The documented knob: base_url in runbooks.yaml ends up before the '#' of every
    runbook_url, in this renderer and (where installed) in kustomize."""
    folder = tmp_path / "k8s"
    shutil.copytree(h.K8S, folder)
    base = "https://git.example.com/ops/prewarm/-/blob/v1/docs/deploy.md"
    runbooks = folder / "runbooks.yaml"
    doc = yaml.safe_load(runbooks.read_text())
    doc["data"]["base_url"] = base
    runbooks.write_text(yaml.safe_dump(doc))
    anchors = {r["alert"].lower() for r in h.alert_rules()}
    renderings = [c.render_kustomization(folder)]
    if shutil.which("kubectl"):
        renderings.append(kubectl_kustomize(folder))
    for objects in renderings:
        rule = one(objects, "PrometheusRule")
        urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"]
                for r in g["rules"]]
        assert sorted(urls) == sorted(f"{base}#{a}" for a in anchors)


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    """A kustomization feature the renderer does not know fails loudly instead of rendering
    something kustomize would not."""
    folder = tmp_path / "k8s"
    shutil.copytree(h.K8S, folder)
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization["commonAnnotations"] = {"a": "b"}
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    with pytest.raises(c.RenderError, match="commonAnnotations"):
        c.render_kustomization(folder)
    kustomization.pop("commonAnnotations")
    kustomization["labels"][0]["includeSelectors"] = True
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    with pytest.raises(c.RenderError, match="selectors"):
        c.render_kustomization(folder)


# -------------------------------------------------------------------------------- schemas


def test_every_rendered_object_is_valid(rendered: list) -> None:
    """Strict built-in schemas of Kubernetes 1.29, 1.32 and master; the Prometheus Operator's
    CRDs for the ServiceMonitor and the PrometheusRule."""
    problems = [p for obj in rendered for p in c.validation_route(obj)(obj)]
    assert problems == [], "\n".join(problems)


def test_knative_service_is_valid(ksvc: dict) -> None:
    assert c.crd_problems(ksvc) == []


def test_strict_builtin_schemas_reject_an_unknown_field_and_a_wrong_type(rendered: list) -> None:
    deployment = one(rendered, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    deployment["spec"]["replicas"] = "1"
    problems = c.validation_route(deployment)(deployment)
    for schema_dir in c.K8S_SCHEMA_DIRS:
        mine = [p for p in problems if f"({schema_dir})" in p]
        assert any("'imagePulPolicy' was unexpected" in p for p in mine), problems
        assert any("spec.replicas" in p for p in mine), problems
    service = one(rendered, "Service")
    service["metadata"]["label"] = {"x": "y"}  # metadata is strict too
    assert any("'label' was unexpected" in p for p in c.validation_route(service)(service))


def test_crd_schemas_reject_unknown_fields_and_bad_values(rendered: list, ksvc: dict) -> None:
    monitor = one(rendered, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["honorLabel"] = True
    assert any("'honorLabel' was unexpected" in p for p in c.crd_problems(monitor))
    monitor = one(rendered, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scheme"] = "tcp"  # an enum
    assert any("endpoints.0.scheme" in p for p in c.crd_problems(monitor))
    rule = one(rendered, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "2 minutes"  # the CRD's duration pattern
    assert any("rules.0.for" in p for p in c.crd_problems(rule))
    rule = one(rendered, "PrometheusRule")
    rule["metadata"]["annotation"] = {}  # the custom resource's metadata is strict ObjectMeta
    assert any("'annotation' was unexpected" in p for p in c.crd_problems(rule))
    broken = copy.deepcopy(ksvc)
    broken["spec"]["template"]["spec"]["timeoutSecond"] = 600
    assert any("'timeoutSecond' was unexpected" in p for p in c.crd_problems(broken))


def test_list_type_map_keys_must_be_unique(ksvc: dict) -> None:
    """x-kubernetes-list-type: map, which the API server enforces and plain JSON schema cannot:
    two environment variables of one name."""
    broken = copy.deepcopy(ksvc)
    env = broken["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append(dict(env[0]))
    schema = c.crd_schema("crd-service.yaml", "Service", "v1")
    env_schema = schema["properties"]["spec"]["properties"]["template"]["properties"]["spec"][
        "properties"]["containers"]["items"]["properties"]["env"]
    assert env_schema.get("x-kubernetes-list-type") == "map", "pick another list-type map"
    assert any("duplicate entries" in p for p in c.crd_problems(broken))


def test_every_kind_has_a_validator() -> None:
    """An object of a kind nothing validates is an error, not a silent pass."""
    with pytest.raises(AssertionError, match="nothing validates"):
        c.validation_route({"apiVersion": "example.com/v1", "kind": "Widget",
                            "metadata": {"name": "w"}})


# -------------------------------------------------------------------------------- Knative


def test_knative_annotations_are_known_and_on_the_revision_template(ksvc: dict) -> None:
    assert c.knative_service_problems(ksvc) == []


def test_knative_rules_catch_misplaced_unknown_and_invalid_annotations(ksvc: dict) -> None:
    g = c.KNATIVE_AUTOSCALING_GROUP
    template = ksvc["spec"]["template"]["metadata"]["annotations"]

    def problems(change: Any) -> list[str]:
        broken = copy.deepcopy(ksvc)
        change(broken)
        return c.knative_service_problems(broken)

    # On the Service's own metadata: rejected by the webhook.
    moved = problems(lambda s: s["metadata"].setdefault("annotations", {}).update(
        {f"{g}/min-scale": "0"}))
    assert any("must be put under" in p for p in moved), moved
    # A misspelt key on the template: ignored by Knative, so caught here.
    typo = problems(lambda s: s["spec"]["template"]["metadata"]["annotations"].update(
        {f"{g}/min-scal": "0"}))
    assert any(f"unknown key {g}/min-scal" in p for p in typo), typo
    # Values the webhook rejects.
    assert any("window" in p for p in problems(
        lambda s: s["spec"]["template"]["metadata"]["annotations"].update({f"{g}/window": "5s"})))
    assert any("max-scale" in p for p in problems(
        lambda s: s["spec"]["template"]["metadata"]["annotations"].update(
            {f"{g}/min-scale": "3", f"{g}/max-scale": "2"})))
    assert any("metric" in p for p in problems(
        lambda s: s["spec"]["template"]["metadata"]["annotations"].update({f"{g}/metric": "cpu"})))
    assert any("timeoutSeconds" in p for p in problems(
        lambda s: s["spec"]["template"]["spec"].update({"timeoutSeconds": 900})))
    assert template  # the real manifest has annotations to check


def test_go_durations_parse_like_go() -> None:
    assert c.go_duration_seconds("60s") == 60
    assert c.go_duration_seconds("1m30s") == 90
    assert c.go_duration_seconds("0") == 0
    assert c.go_duration_seconds("1.5h") == 5400
    for bad in ("60", "s", "1 m", "", "1d"):
        assert c.go_duration_seconds(bad) is None, bad


# -------------------------------------------------------------------------------- operator labels


def test_servicemonitor_keeps_prewarmds_service_label(rendered: list) -> None:
    """prewarmd's metrics carry "service", a label the operator also sets on every target:
    honorLabels must be on, and no other target label may be among prewarmd's."""
    assert "service" in c.metric_labels()
    assert c.servicemonitor_label_problems(one(rendered, "ServiceMonitor")) == []


def test_label_clashes_are_caught(rendered: list) -> None:
    monitor = one(rendered, "ServiceMonitor")
    monitor["spec"]["endpoints"][0].pop("honorLabels", None)
    (problem,) = c.servicemonitor_label_problems(monitor)
    assert "exported_service" in problem
    # With honorLabels, a metric label that is another target label would overwrite it.
    monitor = one(rendered, "ServiceMonitor")
    problems = c.servicemonitor_label_problems(monitor, c.metric_labels() | {"namespace", "job"})
    assert any("['job', 'namespace']" in p for p in problems), problems
    # targetLabels that overwrite the operator's own.
    monitor["spec"]["targetLabels"] = ["pod"]
    assert any("targetLabels" in p for p in c.servicemonitor_label_problems(monitor))


def test_operator_scrape_config_follows_the_servicemonitor(rendered: list) -> None:
    """The generated job (used by test_deploy_live.py) takes honor_labels, port, path and
    selector from the manifest, so that changing the ServiceMonitor changes the live test."""
    monitor, service = one(rendered, "ServiceMonitor"), one(rendered, "Service")
    config = c.operator_scrape_config(monitor, 0, service, "prewarmd-0", "prewarmd",
                                      "127.0.0.1:9464")
    endpoint = monitor["spec"]["endpoints"][0]
    assert config["honor_labels"] is endpoint["honorLabels"] is True
    assert config["metrics_path"] == endpoint["path"]
    assert config["job_name"] == "serviceMonitor/prewarm/prewarmd/0"
    keeps = [r for r in config["relabel_configs"] if r.get("action") == "keep"]
    assert {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": "metrics"} in keeps
    endpoint.pop("honorLabels", None)
    assert c.operator_scrape_config(monitor, 0, service, "p", "c", "a")["honor_labels"] is False
    endpoint["bearerTokenFile"] = "/x"
    with pytest.raises(c.RenderError, match="bearerTokenFile"):
        c.operator_scrape_config(monitor, 0, service, "p", "c", "a")


def test_operator_scrape_config_passes_promtool(rendered: list, tmp_path: Path) -> None:
    promtool = h.require_tool("promtool")
    monitor, service = one(rendered, "ServiceMonitor"), one(rendered, "Service")
    config = {"scrape_configs": [c.operator_scrape_config(monitor, 0, service, "prewarmd-0",
                                                          "prewarmd", "127.0.0.1:9464")]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = h.run([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------------------------------------- schema location


def test_a_missing_schema_skips_naming_it_or_fails_in_ci(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(c.SCHEMAS_ENV, str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PREWARM_REQUIRE_BINARIES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape("crd-service.yaml is missing")):
        c.schema_file("crd-service.yaml")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        c.schema_file("crd-service.yaml")
    monkeypatch.delenv("CI")
    monkeypatch.setenv("PREWARM_REQUIRE_BINARIES", "1")
    with pytest.raises(pytest.fail.Exception, match="crd-service.yaml"):
        c.schema_file("crd-service.yaml")


def test_schemas_are_found_beside_the_repository_by_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(c.SCHEMAS_ENV, raising=False)
    assert c.schemas_dir() == h.REPO.parent / "shared" / "peer-schemas"


# -------------------------------------------------------------------------------- PostgreSQL variant

K8S_POSTGRES = h.DEPLOY / "k8s-postgres"


@pytest.fixture(scope="module")
def rendered_postgres() -> list[dict[str, Any]]:
    return c.render_kustomization(K8S_POSTGRES)


def test_postgres_variant_rendering_matches_kubectl_kustomize(rendered_postgres: list) -> None:
    assert rendered_postgres == kubectl_kustomize(K8S_POSTGRES)


def test_postgres_variant_objects_are_valid(rendered_postgres: list) -> None:
    problems = [p for obj in rendered_postgres for p in c.validation_route(obj)(obj)]
    assert problems == [], "\n".join(problems)


def test_postgres_variant_runs_two_replicas_on_the_secret_without_a_volume(
        rendered_postgres: list) -> None:
    assert c.objects_by_kind(rendered_postgres, "PersistentVolumeClaim") == []
    deployment = one(rendered_postgres, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    (container,) = spec["template"]["spec"]["containers"]
    assert "--store=$(PREWARM_STORE)" in container["args"]
    (store_env,) = [e for e in container["env"] if e["name"] == "PREWARM_STORE"]
    assert store_env["valueFrom"]["secretKeyRef"] == {"name": "prewarm-db-app", "key": "uri"}
    assert all(m["name"] != "store" for m in container["volumeMounts"])
    assert all(v["name"] != "store" for v in spec["template"]["spec"]["volumes"])
    # Readiness follows the leadership (only the leader serves the service); liveness the server,
    # which a standby serves too.
    assert container["readinessProbe"]["grpc"]["service"] == "prewarm.v1.PrewarmService"
    assert "service" not in container["livenessProbe"]["grpc"]


def test_cnpg_cluster_example_makes_the_secret_the_deployment_reads(
        rendered_postgres: list) -> None:
    """No CloudNativePG schema is in ../shared/peer-schemas, so the example Cluster is checked
    here for what prewarmd relies on: the operator names the application Secret
    <cluster>-app, with the DSN under `uri`, in the cluster's namespace."""
    (cluster,) = [d for d in yaml.safe_load_all((K8S_POSTGRES / "cnpg-cluster.yaml").read_text())
                  if d]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["kind"] == "Cluster"
    assert cluster["spec"]["instances"] >= 2
    assert cluster["spec"]["bootstrap"]["initdb"]["database"]
    deployment = one(rendered_postgres, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (store_env,) = [e for e in container["env"] if e["name"] == "PREWARM_STORE"]
    assert store_env["valueFrom"]["secretKeyRef"]["name"] == f"{cluster['metadata']['name']}-app"
    assert cluster["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_renderer_applies_json_patches_and_deletions_like_kustomize(tmp_path: Path) -> None:
    """A patch the renderer gets wrong fails loudly rather than rendering something else."""
    folder = tmp_path / "overlay"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(h.K8S)], "patches": [{"path": "p.yaml", "target": {"kind": "Nope"}}]}))
    (folder / "p.yaml").write_text(yaml.safe_dump([{"op": "replace", "path": "/x", "value": 1}]))
    with pytest.raises(c.RenderError, match="matches nothing"):
        c.render_kustomization(folder)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(h.K8S)],
        "patches": [{"path": "p.yaml", "target": {"kind": "Deployment", "name": "prewarmd"}}]}))
    (folder / "p.yaml").write_text(yaml.safe_dump([{"op": "move", "path": "/x", "from": "/y"}]))
    with pytest.raises(c.RenderError, match="only add, replace and remove"):
        c.render_kustomization(folder)
