"""deploy/ against what the real API servers, operators and webhooks accept.

The ground truth is the peer material in ../shared/peer-schemas (its README.md): the strict JSON
schemas of the built-in Kubernetes types, the CRDs of the Prometheus Operator and of Knative
Serving, and the annotation keys Knative's webhook knows. This module

- renders deploy/k8s as `kustomize build` does, for the kustomization features the folder uses
  (resources, namespace, labels, images, replacements, local-config objects) and refuses any
  other, so that a new feature cannot be rendered wrongly in silence; where kubectl is installed,
  test_deploy_conformance.py checks that the rendering equals `kubectl kustomize`'s. Debian 12
  packages neither kustomize nor a kubectl whose kustomize knows `labels:` (kubernetes-client is
  1.20, kustomize v2), hence this renderer;
- validates objects against those schemas: strictly for the built-in types (unknown fields are
  errors, as with `kubectl apply`'s default --validate=strict), and against a CRD's
  openAPIV3Schema made strict the same way (the API server prunes fields a structural schema does
  not declare, which strict field validation reports as unknown), with the strict ObjectMeta of
  the built-in schemas for the custom resources' metadata, and the list-type rules the API server
  enforces (x-kubernetes-list-type set/map);
- checks what a schema cannot see: the autoscaling annotations of a Knative Service (known keys on
  the revision template, values as the webhook validates them, none on the Service's own
  metadata) and clashes between prewarmd's metric labels and the labels the Prometheus Operator
  gives every target of a ServiceMonitor.

Each check returns a list of problems (empty when the object conforms), so that a test can feed
it a deliberately broken object and see it fail.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml

import deploy_helpers as h

SCHEMAS_ENV = "PREWARM_PEER_SCHEMAS"
# Oldest and newest Kubernetes release the manifests are held to, and master.
K8S_SCHEMA_DIRS = ("v1.29.0-standalone-strict", "v1.32.2-standalone-strict",
                   "master-standalone-strict")
CRDS = {
    ("monitoring.coreos.com", "ServiceMonitor"): "crd-monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "crd-monitoring.coreos.com_prometheusrules.yaml",
    ("serving.knative.dev", "Service"): "crd-service.yaml",
}
KNATIVE_AUTOSCALING_KEYS = "knative-autoscaling-register.go"


# --------------------------------------------------------------------------------------------
# Where the schemas are


def schemas_dir() -> Path:
    """$PREWARM_PEER_SCHEMAS, else <repo>/../shared/peer-schemas."""
    env = os.environ.get(SCHEMAS_ENV)
    return Path(env) if env else h.REPO.parent / "shared" / "peer-schemas"


def schemas_required() -> bool:
    """In CI (CI=true) or under CTest (PREWARM_REQUIRE_BINARIES=1) a missing schema fails."""
    return (os.environ.get("CI", "").lower() == "true") or h.harness.binaries_required()


def schema_file(relative: str) -> Path:
    """The path of a peer schema. When it is missing the calling test is skipped with a message
    naming it, or fails when schemas_required()."""
    import pytest  # noqa: PLC0415
    path = schemas_dir() / relative
    if path.is_file():
        return path
    message = (f"peer schema {relative} is missing from {schemas_dir()} "
               f"(set {SCHEMAS_ENV} to the folder of ../shared/peer-schemas)")
    if schemas_required():
        pytest.fail(f"{message}; CI=true or PREWARM_REQUIRE_BINARIES=1 require it", pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# kustomize, for the features deploy/k8s uses


class RenderError(Exception):
    pass


KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images",
                        "replacements", "patches"}
# Kinds the namespace transformer leaves without a namespace (kustomize's list is longer; these
# are the ones a folder like deploy/k8s could plausibly hold). Namespace objects are renamed.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
                  "RuntimeClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration", "APIService"}
# kustomize's "legacy" output order: these kinds first, in this order, then the others by kind,
# and these last.
ORDER_FIRST = ["Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
               "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
               "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service", "LimitRange",
               "PriorityClass", "PersistentVolume", "PersistentVolumeClaim", "Deployment",
               "StatefulSet", "CronJob", "PodDisruptionBudget"]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


def render_kustomization(folder: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build folder` outputs, for a kustomization limited to
    KUSTOMIZATION_FIELDS, with local files as resources. RenderError for anything else."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - KUSTOMIZATION_FIELDS
    if unsupported:
        raise RenderError(f"kustomization fields this renderer does not implement: "
                          f"{sorted(unsupported)} (extend tests/deploy/conformance.py)")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"kind {kustomization['kind']!r}")
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if path.is_dir():  # A base: its own rendering (deploy/k8s-postgres builds on deploy/k8s).
            objects += render_kustomization(path)
            continue
        if not path.is_file():
            raise RenderError(f"resource {resource!r}: only local files and folders are supported")
        objects += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for patch in kustomization.get("patches", []):
        objects = _patch(objects, folder, patch)
    # kustomize's built-in transformers, in its order: namespace, labels, images, replacements.
    if "namespace" in kustomization:
        _set_namespace(objects, kustomization["namespace"])
    for entry in kustomization.get("labels", []):
        _add_labels(objects, entry)
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    for replacement in kustomization.get("replacements", []):
        _replace(objects, replacement)
    out = [o for o in objects if not h.is_local_config(o)]
    return sorted(out, key=_legacy_order)


def _patch(objects: list[dict[str, Any]], folder: Path,
           patch: dict[str, Any]) -> list[dict[str, Any]]:
    """kustomize's `patches` entry, for a file holding either a JSON patch (RFC 6902: add,
    replace, remove) applied to the objects its target selects, or a `$patch: delete` of one
    object."""
    if set(patch) - {"path", "target"}:
        raise RenderError(f"patch {patch}: only path and target are supported")
    body = yaml.safe_load((folder / patch["path"]).read_text())
    if isinstance(body, dict):
        if body.get("$patch") != "delete" or "target" in patch:
            raise RenderError(f"patch {patch}: of strategic merge patches only $patch: delete")
        gone = [o for o in objects if o["kind"] == body["kind"]
                and o["metadata"]["name"] == body["metadata"]["name"]]
        if not gone:
            raise RenderError(f"patch {patch}: no {body['kind']} {body['metadata']['name']}")
        return [o for o in objects if o not in gone]
    target = patch.get("target", {})
    if set(target) - {"kind", "name"} or not target:
        raise RenderError(f"patch target {target}: only kind and name")
    matched = [o for o in objects if all(
        (o["kind"] if k == "kind" else o["metadata"]["name"]) == v for k, v in target.items())]
    if not matched:
        raise RenderError(f"patch target {target} matches nothing")
    for obj in matched:
        for op in body:
            _json_patch_op(obj, op)
    return objects


def _json_patch_op(obj: Any, op: dict[str, Any]) -> None:
    if op["op"] not in ("add", "replace", "remove") or set(op) - {"op", "path", "value"}:
        raise RenderError(f"JSON patch op {op}: only add, replace and remove")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
    parent = obj
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    if isinstance(parent, list):
        if op["op"] == "add":
            parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
        elif op["op"] == "replace":
            parent[int(last)] = copy.deepcopy(op["value"])
        else:
            del parent[int(last)]
    else:
        if op["op"] in ("replace", "remove") and last not in parent:
            raise RenderError(f"JSON patch op {op}: no field {last!r}")
        if op["op"] == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(op["value"])


def _legacy_order(obj: dict[str, Any]) -> tuple[int, str, str]:
    kind = obj["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = 1000 + ORDER_LAST.index(kind)
    else:
        rank = 500
    return (rank, kind if rank == 500 else "", obj["metadata"]["name"])


def _set_namespace(objects: list[dict[str, Any]], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            raise RenderError("the namespace of binding subjects is not implemented")
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


def _add_labels(objects: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    unsupported = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
    if unsupported or entry.get("includeSelectors") or entry.get("includeTemplates"):
        raise RenderError(f"labels entry {entry}: only pairs without selectors or templates")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(entry["pairs"])


def _split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def _set_image(objects: list[dict[str, Any]], image: dict[str, Any]) -> None:
    unsupported = set(image) - {"name", "newName", "newTag", "digest"}
    if unsupported:
        raise RenderError(f"images entry {image}: {sorted(unsupported)}")

    def rewrite(container: dict[str, Any]) -> None:
        name, tag, digest = _split_image(container["image"])
        if name != image["name"]:
            return
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            container["image"] = (name + (f":{tag}" if tag else "")
                                  + (f"@{digest}" if digest else ""))

    # kustomize v5 rewrites the image of containers and initContainers at any depth.
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for c in value:
                        if isinstance(c, dict) and isinstance(c.get("image"), str):
                            rewrite(c)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for obj in objects:
        walk(obj)


def _select(objects: list[dict[str, Any]], selector: dict[str, Any]) -> list[dict[str, Any]]:
    unsupported = set(selector) - {"kind", "name"}
    if unsupported:
        raise RenderError(f"replacement selector {selector}: only kind and name")
    return [o for o in objects
            if all(o["kind"] == v if k == "kind" else o["metadata"]["name"] == v
                   for k, v in selector.items())]


def _field_path(path: str) -> list[str]:
    if any(c in path for c in "[]="):
        raise RenderError(f"field path {path!r}: only dotted names and * are supported")
    return path.split(".")


def _get(node: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise RenderError(f"no field {'.'.join(path)}")
        node = node[part]
    return node


def _targets(node: Any, path: list[str], where: str = "") -> Iterator[tuple[Any, Any]]:
    """(container, key) of every field `path` (with * over list items and map values) names."""
    head, rest = path[0], path[1:]
    if head == "*":
        items = list(enumerate(node)) if isinstance(node, list) else (
            list(node.items()) if isinstance(node, dict) else [])
        for key, value in items:
            if rest:
                yield from _targets(value, rest, f"{where}.{key}")
            else:
                yield node, key
        return
    if not isinstance(node, dict) or head not in node:
        raise RenderError(f"replacement target has no field {where}.{head}".lstrip("."))
    if rest:
        yield from _targets(node[head], rest, f"{where}.{head}")
    else:
        yield node, head


def _replace(objects: list[dict[str, Any]], replacement: dict[str, Any]) -> None:
    if set(replacement) - {"source", "targets"}:
        raise RenderError(f"replacement {replacement}: only source and targets")
    source = dict(replacement["source"])
    field_path = _field_path(source.pop("fieldPath", "metadata.name"))
    matches = _select(objects, source)
    if len(matches) != 1:
        raise RenderError(f"replacement source {source}: {len(matches)} objects, want one")
    value = _get(matches[0], field_path)
    for target in replacement["targets"]:
        if set(target) - {"select", "fieldPaths", "options"}:
            raise RenderError(f"replacement target {target}: only select, fieldPaths, options")
        options = target.get("options", {})
        if set(options) - {"delimiter", "index"}:
            raise RenderError(f"replacement options {options}: only delimiter and index")
        for obj in _select(objects, target["select"]):
            for path in target["fieldPaths"]:
                for container, key in _targets(obj, _field_path(path)):
                    container[key] = _substitute(container[key], value, options)


def _substitute(old: Any, value: Any, options: dict[str, Any]) -> Any:
    if "delimiter" not in options:
        return copy.deepcopy(value)
    parts = str(old).split(options["delimiter"])
    index = options.get("index", 0)
    if index >= len(parts):  # kustomize appends (or prepends, for a negative index)
        parts.append(str(value))
    elif index < 0:
        parts.insert(0, str(value))
    else:
        parts[index] = str(value)
    return options["delimiter"].join(parts)


def render_k8s() -> list[dict[str, Any]]:
    return render_kustomization(h.K8S)


# --------------------------------------------------------------------------------------------
# Schemas


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def builtin_schema_name(obj: dict[str, Any]) -> str:
    """The file of a built-in kind in the yannh/kubernetes-json-schema layout."""
    group, version = _group_version(obj["apiVersion"])
    prefix = obj["kind"].lower() + (f"-{group.split('.')[0]}" if group else "")
    return f"{prefix}-{version}.json"


def crd_file(obj: dict[str, Any]) -> Optional[str]:
    group, _ = _group_version(obj["apiVersion"])
    return CRDS.get((group, obj["kind"]))


@functools.lru_cache(maxsize=None)
def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def require_jsonschema() -> Any:
    """The jsonschema module (Debian's python3-jsonschema); skipped when missing, or failed when
    schemas_required()."""
    import pytest  # noqa: PLC0415
    try:
        import jsonschema  # noqa: PLC0415
    except ImportError:
        message = "python3-jsonschema is not installed (scripts/install-deps.sh installs it)"
        if schemas_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return jsonschema


def _validator(schema: dict[str, Any]) -> Any:
    jsonschema = require_jsonschema()

    def list_type(validator: Any, kind: str, instance: Any,
                  schema: dict[str, Any]) -> Iterator[Any]:
        # The API server's list semantics: a "set" has unique items, a "map" unique keys.
        if not isinstance(instance, list):
            return
        if kind == "set":
            keys = [json.dumps(i, sort_keys=True) for i in instance]
        elif kind == "map":
            names = schema.get("x-kubernetes-list-map-keys", [])
            keys = [json.dumps([i.get(n) for n in names]) if isinstance(i, dict) else None
                    for i in instance]
        else:
            return
        duplicates = sorted({k for k in keys if k is not None and keys.count(k) > 1})
        if duplicates:
            yield jsonschema.ValidationError(f"duplicate entries in a list-type {kind}: "
                                             f"{duplicates}")

    cls = jsonschema.validators.extend(jsonschema.Draft7Validator,
                                       {"x-kubernetes-list-type": list_type})
    return cls(schema)


def _problems(schema: dict[str, Any], obj: dict[str, Any], where: str) -> list[str]:
    out = []
    for error in sorted(_validator(schema).iter_errors(obj), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        out.append(f"{where}: {path}: {error.message}")
    return out


def builtin_problems(obj: dict[str, Any], schema_dir: str) -> list[str]:
    """Errors of a built-in object against the strict schema of one Kubernetes release."""
    name = builtin_schema_name(obj)
    schema = _load_json(schema_file(f"k8s/{schema_dir}/{name}"))
    return _problems(schema, obj, f"{obj['kind']} {obj['metadata'].get('name')} ({schema_dir})")


def strict_object_meta() -> dict[str, Any]:
    """ObjectMeta, strict, from the newest built-in schema."""
    schema = _load_json(schema_file(f"k8s/{K8S_SCHEMA_DIRS[-1]}/configmap-v1.json"))
    return schema["properties"]["metadata"]


def structural_to_json_schema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as a JSON schema that rejects undeclared fields where the API server
    would prune them (objects with properties, no additionalProperties and no
    x-kubernetes-preserve-unknown-fields), with nullable and int-or-string spelled out."""
    if isinstance(node, list):
        return [structural_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: structural_to_json_schema(v) for k, v in node.items()
           if k not in ("nullable", "format")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (node.get("type") == "object" and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def crd_schema(relative: str, kind: str, version: str) -> dict[str, Any]:
    path = schema_file(relative)
    for crd in yaml.safe_load_all(path.read_text()):
        if crd and crd["spec"]["names"]["kind"] == kind:
            for v in crd["spec"]["versions"]:
                if v["name"] == version and v.get("served", True):
                    schema = structural_to_json_schema(v["schema"]["openAPIV3Schema"])
                    schema["properties"]["metadata"] = strict_object_meta()
                    return schema
            raise AssertionError(f"{relative}: {kind} has no served version {version}")
    raise AssertionError(f"{relative} defines no {kind}")


def crd_problems(obj: dict[str, Any]) -> list[str]:
    relative = crd_file(obj)
    assert relative, f"no CRD known for {obj['apiVersion']} {obj['kind']}"
    _, version = _group_version(obj["apiVersion"])
    schema = crd_schema(relative, obj["kind"], version)
    return _problems(schema, obj, f"{obj['kind']} {obj['metadata'].get('name')} ({relative})")


# --------------------------------------------------------------------------------------------
# Knative: what its webhook checks beyond the CRD

KNATIVE_AUTOSCALING_GROUP = "autoscaling.knative.dev"
# config-defaults' max-revision-timeout-seconds, the webhook's bound on timeoutSeconds by default.
KNATIVE_MAX_REVISION_TIMEOUT_SECONDS = 600
GO_DURATION = re.compile(r"^(?:0|[-+]?(?:[0-9]*(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+)$")
GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def knative_autoscaling_keys() -> set[str]:
    """Every autoscaling annotation key Knative knows: GroupName + "/..." in register.go (current
    names and their deprecated camelCase spellings)."""
    text = schema_file(KNATIVE_AUTOSCALING_KEYS).read_text()
    group = re.search(r'^\s*GroupName\s*=\s*"([^"]+)"', text, re.M).group(1)
    assert group == KNATIVE_AUTOSCALING_GROUP, group
    keys = {group + suffix for suffix in re.findall(r'GroupName\s*\+\s*"(/[^"]+)"', text)}
    assert f"{group}/min-scale" in keys and f"{group}/window" in keys, keys
    return keys


def go_duration_seconds(text: str) -> Optional[float]:
    """Go's time.ParseDuration, in seconds; None when it would fail."""
    if not GO_DURATION.match(text) or text in ("", "+", "-"):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    total = 0.0
    for number, unit in re.findall(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)", text.lstrip("+-")):
        if number in ("", "."):
            return None
        total += float(number) * GO_UNITS[unit]
    return sign * total


def _autoscaling_value_problems(annotations: dict[str, str]) -> list[str]:
    """knative.dev/serving pkg/apis/autoscaling/annotation_validation.go, for the keys deploy/
    can use (current spellings)."""
    g = KNATIVE_AUTOSCALING_GROUP
    problems = []

    def get(name: str) -> Optional[str]:
        return annotations.get(f"{g}/{name}")

    def integer(name: str) -> Optional[int]:
        value = get(name)
        if value is None:
            return None
        if not re.fullmatch(r"[0-9]+", value) or int(value) > 2**31 - 1:
            problems.append(f"{g}/{name}: {value!r} is not an integer in 0..2147483647")
            return None
        return int(value)

    def number(name: str, low: float, high: float) -> None:
        value = get(name)
        if value is None:
            return
        try:
            f = float(value)
        except ValueError:
            problems.append(f"{g}/{name}: {value!r} is not a number")
            return
        if not low <= f <= high:
            problems.append(f"{g}/{name}: {value} is outside {low}..{high}")

    def duration(name: str, low: float, high: float) -> None:
        value = get(name)
        if value is None:
            return
        seconds = go_duration_seconds(value)
        if seconds is None:
            problems.append(f"{g}/{name}: {value!r} is not a Go duration")
        elif not low <= seconds <= high:
            problems.append(f"{g}/{name}: {value} is outside {low:g}s..{high:g}s")
        elif seconds != int(seconds):
            problems.append(f"{g}/{name}: {value} must have at most second precision")

    cls = get("class")
    if cls is not None and cls.endswith(".knative.dev") and cls not in (
            "kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev"):
        problems.append(f"{g}/class: unknown class {cls!r}")
    low, high = integer("min-scale"), integer("max-scale")
    if low is not None and high not in (None, 0) and high < low:
        problems.append(f"{g}/max-scale {high} is less than min-scale {low}")
    integer("initial-scale")
    number("target", 0.01, float("inf"))
    number("target-utilization-percentage", 1, 100)
    number("panic-window-percentage", 1, 100)
    number("panic-threshold-percentage", 110, 1000)
    duration("window", 6, 3600)
    duration("scale-to-zero-pod-retention-period", 0, 3600)
    duration("scale-down-delay", 0, 3600)
    metric = get("metric")
    if metric is not None and (cls or "kpa.autoscaling.knative.dev") == \
            "kpa.autoscaling.knative.dev" and metric not in ("concurrency", "rps"):
        problems.append(f"{g}/metric: the KPA scales on concurrency or rps, not {metric!r}")
    return problems


def knative_service_problems(ksvc: dict[str, Any]) -> list[str]:
    """What Knative's webhook rejects, or silently ignores, in a Service beyond its CRD schema."""
    problems = []
    g = KNATIVE_AUTOSCALING_GROUP
    for key in (ksvc["metadata"].get("annotations") or {}):
        # ValidateHasNoAutoscalingAnnotation (Service and Configuration).
        if key.startswith(g):
            problems.append(f"metadata.annotations: {key}: autoscaling annotations must be put "
                            f'under "spec.template.metadata.annotations" to work')
    template = ksvc["spec"]["template"]
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    known = knative_autoscaling_keys()
    for key in annotations:
        # The webhook ignores unknown keys: a misspelt one changes nothing, silently.
        if key.startswith(g + "/") and key not in known:
            problems.append(f"spec.template.metadata.annotations: unknown key {key} "
                            f"(Knative ignores it; known: {sorted(known)})")
    problems += [f"spec.template.metadata.annotations: {p}"
                 for p in _autoscaling_value_problems(annotations)]
    spec = template["spec"]
    timeout = spec.get("timeoutSeconds")
    if timeout is not None and not 0 <= timeout <= KNATIVE_MAX_REVISION_TIMEOUT_SECONDS:
        problems.append(f"spec.template.spec.timeoutSeconds: {timeout} is outside "
                        f"0..{KNATIVE_MAX_REVISION_TIMEOUT_SECONDS} (max-revision-timeout-seconds)")
    start = spec.get("responseStartTimeoutSeconds")
    if start is not None and timeout is not None and start > timeout:
        problems.append(f"spec.template.spec.responseStartTimeoutSeconds: {start} exceeds "
                        f"timeoutSeconds {timeout}")
    return problems


# --------------------------------------------------------------------------------------------
# Prometheus Operator: the target labels of a ServiceMonitor

# Labels the operator's relabeling gives every target of a ServiceMonitor endpoint
# (generateServiceMonitorConfig in prometheus-operator pkg/prometheus/promcfg.go), besides
# Prometheus' own instance. ("node" is added only for node targets.)
OPERATOR_TARGET_LABELS = frozenset({"job", "instance", "namespace", "service", "pod", "container",
                                    "endpoint"})
# Target labels prewarmd's metrics carry on purpose, which must win over the operator's: the
# warmed service. Honouring any other would let a scrape rewrite the target's identity.
PREWARMD_OWNED_LABELS = frozenset({"service"})


def sanitize_label_name(name: str) -> str:
    """The operator's sanitizeLabelName: invalid characters become underscores."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def metric_labels() -> frozenset[str]:
    """Every label of every series prewarmd exposes (server/metrics.cc's contract)."""
    out: set[str] = set()
    for metric in h.metric_contract().values():
        for labels in metric.series().values():
            out |= labels
    return frozenset(out)


def servicemonitor_label_problems(monitor: dict[str, Any],
                                  labels: Optional[frozenset[str]] = None) -> list[str]:
    """Clashes between prewarmd's metric labels and a ServiceMonitor's target labels. A clash
    without honorLabels renames prewarmd's label to exported_<label>; with honorLabels, a clash on
    a label prewarmd does not own would let its metrics overwrite the target's identity."""
    labels = metric_labels() if labels is None else labels
    spec = monitor["spec"]
    extra = {sanitize_label_name(l) for l in spec.get("targetLabels", [])} | \
            {sanitize_label_name(l) for l in spec.get("podTargetLabels", [])}
    problems = [f"targetLabels/podTargetLabels {sorted(extra & OPERATOR_TARGET_LABELS)} overwrite "
                f"the operator's own target labels"] if extra & OPERATOR_TARGET_LABELS else []
    for i, endpoint in enumerate(spec["endpoints"]):
        targets = set(OPERATOR_TARGET_LABELS) | extra | {
            r["targetLabel"] for r in endpoint.get("relabelings", [])
            if "targetLabel" in r and not r["targetLabel"].startswith("__")}
        clash = labels & targets
        where = f"endpoints[{i}] ({endpoint.get('port', endpoint.get('targetPort'))})"
        foreign = clash - PREWARMD_OWNED_LABELS
        if foreign:
            problems.append(f"{where}: prewarmd's metrics carry the target labels "
                            f"{sorted(foreign)}, which no scrape configuration may keep")
        owned = clash & PREWARMD_OWNED_LABELS
        if owned and endpoint.get("honorLabels") is not True:
            problems.append(f"{where}: prewarmd's metrics carry {sorted(owned)}, also a target "
                            f"label of the operator: without honorLabels: true Prometheus renames "
                            f"them exported_{'/exported_'.join(sorted(owned))}")
    return problems


def operator_scrape_config(monitor: dict[str, Any], endpoint_index: int, service: dict[str, Any],
                           pod_name: str, container: str, address: str,
                           overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The scrape job the Prometheus Operator generates for one ServiceMonitor endpoint (its
    generateServiceMonitorConfig, role endpoints, one shard), with the Kubernetes service
    discovery replaced by one static target carrying the __meta_kubernetes_* labels the discovery
    would give the endpoint of `pod_name` behind `service`: the relabeling is the operator's,
    unchanged. `overrides` replaces top-level keys (the test's scrape interval)."""
    spec = monitor["spec"]
    endpoint = spec["endpoints"][endpoint_index]
    namespace = monitor["metadata"]["namespace"]
    supported = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
    if set(endpoint) - supported or set(spec) - {"selector", "endpoints"} or \
            set(spec["selector"]) - {"matchLabels"}:
        raise RenderError(f"ServiceMonitor fields this generator does not implement: "
                          f"{sorted(set(endpoint) - supported)} {sorted(set(spec))}")
    config: dict[str, Any] = {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{endpoint_index}",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
    }
    for key, name in (("interval", "scrape_interval"), ("scrapeTimeout", "scrape_timeout"),
                      ("path", "metrics_path"), ("scheme", "scheme")):
        if key in endpoint:
            config[name] = endpoint[key]
    relabel: list[dict[str, Any]] = [{"source_labels": ["job"],
                                      "target_label": "__tmp_prometheus_job_name"}]
    for key in sorted(spec["selector"]["matchLabels"]):
        name = sanitize_label_name(key)
        relabel.append({"action": "keep",
                        "source_labels": [f"__meta_kubernetes_service_label_{name}",
                                          f"__meta_kubernetes_service_labelpresent_{name}"],
                        "regex": f"({spec['selector']['matchLabels'][key]});true"})
    relabel.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                    "regex": endpoint["port"]})
    kind_name = ["__meta_kubernetes_endpoint_address_target_kind",
                 "__meta_kubernetes_endpoint_address_target_name"]
    relabel += [
        {"source_labels": kind_name, "separator": ";", "regex": "Node;(.*)",
         "replacement": "${1}", "target_label": "node"},
        {"source_labels": kind_name, "separator": ";", "regex": "Pod;(.*)",
         "replacement": "${1}", "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
         "regex": "(Failed|Succeeded)"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job",
         "replacement": "${1}"},
        {"target_label": "endpoint", "replacement": endpoint["port"]},
        # Sharding, one shard: the config reloader substitutes $(SHARD) with 0.
        {"source_labels": ["__address__"], "target_label": "__tmp_hash", "modulus": 1,
         "action": "hashmod"},
        {"source_labels": ["__tmp_hash"], "regex": "0", "action": "keep"},
    ]
    config["relabel_configs"] = relabel
    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_service_name": service["metadata"]["name"],
        "__meta_kubernetes_endpoint_port_name": endpoint["port"],
        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": pod_name,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_phase": "Running",
    }
    for key, value in service["metadata"].get("labels", {}).items():
        meta[f"__meta_kubernetes_service_label_{sanitize_label_name(key)}"] = value
        meta[f"__meta_kubernetes_service_labelpresent_{sanitize_label_name(key)}"] = "true"
    config["static_configs"] = [{"targets": [address], "labels": meta}]
    config.update(overrides or {})
    return config


def objects_by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def validation_route(obj: dict[str, Any]) -> Callable[[dict[str, Any]], list[str]]:
    """How an object of deploy/ is validated: the strict built-in schemas of every release in
    K8S_SCHEMA_DIRS, or its CRD. AssertionError for an object nothing validates."""
    if crd_file(obj):
        return crd_problems
    group, _ = _group_version(obj["apiVersion"])
    if group in ("", "apps", "batch", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"):
        return lambda o: [p for d in K8S_SCHEMA_DIRS for p in builtin_problems(o, d)]
    raise AssertionError(f"nothing validates {obj['apiVersion']} {obj['kind']}: add its schema "
                         f"to ../shared/peer-schemas and to tests/deploy/conformance.py")
