"""Shared helpers of the deployment checks (tests/deploy/test_deploy_*.py).

The ground truth is the server's code, never a copy of it here: prewarmd's flags are read from
server/main.cc, its default addresses from server/config.h, and the metric contract (names, types,
labels) from server/metrics.cc and server/process_collector.cc. PromQL is scanned with a small
tokenizer that finds the vector selectors and aggregation labels of an expression, enough to check
every metric and label the alert rules and the dashboard use against that contract.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
K8S = DEPLOY / "k8s"
KNATIVE = DEPLOY / "knative"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "prewarm.json"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
PYTHON = "/usr/bin/python3"
# The scrape job every rule and panel expects (prometheus.yml; the ServiceMonitor's Service name).
JOB = "prewarmd"

sys.path.insert(0, str(REPO / "tests" / "integration"))
import harness  # noqa: E402  (tests/integration/harness.py: processes, stubs, clients)


# --------------------------------------------------------------------------------------------
# Tools


def require_tool(name: str, optional: bool = False) -> str:
    """The path of `name`. When it is missing the test is skipped, or fails when
    PREWARM_REQUIRE_BINARIES=1 (CTest) and the tool is one scripts/install-deps.sh installs
    (`optional` False): a skip there would hide a broken machine."""
    import pytest  # noqa: PLC0415
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed"
    if not optional and harness.binaries_required():
        pytest.fail(f"PREWARM_REQUIRE_BINARIES=1: {message} (scripts/install-deps.sh installs it)",
                    pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")


def prewarmctl_binary() -> Path:
    return harness.build_dir() / "clients" / "cpp" / "prewarmctl"


def require_prewarmctl() -> Path:
    """build/clients/cpp/prewarmctl; skipped when missing, or failed under
    PREWARM_REQUIRE_BINARIES=1."""
    import pytest  # noqa: PLC0415
    binary = prewarmctl_binary()
    if os.access(binary, os.X_OK):
        return binary
    message = (f"{binary} is missing; build it with "
               f"`ninja -C {harness.build_dir()} prewarmctl`")
    if harness.binaries_required():
        pytest.fail(f"PREWARM_REQUIRE_BINARIES=1: {message}", pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


# --------------------------------------------------------------------------------------------
# The server's own facts, read from its code


def prewarmd_flags() -> set[str]:
    """Names of prewarmd's command-line flags (ABSL_FLAG in server/main.cc)."""
    text = (REPO / "server" / "main.cc").read_text()
    flags = set(re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,", text))
    assert flags, "no ABSL_FLAG found in server/main.cc"
    return flags


def default_addresses() -> dict[str, str]:
    """prewarmd's default listen addresses and store (ServerOptions in server/config.h)."""
    text = (REPO / "server" / "config.h").read_text()
    found = dict(re.findall(r'std::string (grpc_address|metrics_address|store_path) = "([^"]*)";',
                            text))
    assert set(found) == {"grpc_address", "metrics_address", "store_path"}, found
    return found


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def flag_names(args: Iterable[str]) -> list[str]:
    """The flag names of command-line arguments like --name=value."""
    names = []
    for arg in args:
        assert arg.startswith("--"), f"argument {arg!r} is not a --flag"
        names.append(arg[2:].split("=", 1)[0])
    return names


@dataclass(frozen=True)
class Metric:
    name: str
    type: str                 # counter, gauge, histogram
    labels: frozenset[str]

    def series(self) -> dict[str, frozenset[str]]:
        """Series names a scrape exposes, with their labels."""
        if self.type == "histogram":
            return {f"{self.name}_bucket": self.labels | {"le"},
                    f"{self.name}_sum": self.labels, f"{self.name}_count": self.labels}
        return {self.name: self.labels}


def metric_contract() -> dict[str, Metric]:
    """prewarmd's metrics: names and types from the registrations in server/metrics.cc, labels
    from the contract comment there (whose list of names must agree with the registrations), plus
    the process_* gauges and counter of server/process_collector.cc."""
    text = (REPO / "server" / "metrics.cc").read_text()
    registered = {name: kind.lower() for kind, name in
                  re.findall(r"Build(Counter|Gauge|Histogram)\(\)\s*\.Name\(\"([a-z_:]+)\"\)", text)}
    assert registered, "no metric registrations found in server/metrics.cc"
    documented: dict[str, frozenset[str]] = {}
    for name, labels in re.findall(r"^//\s+(prewarm_[a-z_]+)(?:\{([a-z_,]*)\})?", text, re.M):
        documented[name] = frozenset(l for l in labels.split(",") if l)
    assert set(documented) == set(registered), (
        "server/metrics.cc: the contract comment and the registrations disagree: "
        f"{sorted(set(documented) ^ set(registered))}")
    contract = {name: Metric(name, registered[name], documented[name]) for name in registered}
    process = (REPO / "server" / "process_collector.cc").read_text()
    for name in set(re.findall(r"\"(process_[a-z_]+)\"", process)):
        kind = "counter" if name.endswith("_total") else "gauge"
        contract[name] = Metric(name, kind, frozenset())
    # Prometheus' own series for every target.
    contract["up"] = Metric("up", "gauge", frozenset())
    return contract


def label_values() -> dict[tuple[str, str], frozenset[str]]:
    """The fixed value sets of labels, from the constants of server/metrics.h (kWarmup*: result of
    prewarm_warmups_total, kTask*: outcome of prewarm_task_starts_total, kRun*: outcome of
    prewarm_runs_finished_total) and the store's "result: ok, error"; each plus kOtherLabel."""
    header = (REPO / "server" / "metrics.h").read_text()
    other = re.search(r'kOtherLabel\[\] = "([^"]+)"', header).group(1)

    def constants(prefix: str) -> frozenset[str]:
        found = re.findall(rf'constexpr char k{prefix}\w+\[\] = "([^"]+)"', header)
        assert found, f"no k{prefix}* constants in server/metrics.h"
        return frozenset(found) | {other}

    source = (REPO / "server" / "metrics.cc").read_text()
    store = re.search(r"prewarm_store_writes_total\{result\}\s+result: ([a-z, ]+)", source)
    assert store, "server/metrics.cc: no 'result: ...' for prewarm_store_writes_total"
    return {
        ("prewarm_warmups_total", "result"): constants("Warmup"),
        ("prewarm_task_starts_total", "outcome"): constants("Task"),
        ("prewarm_runs_finished_total", "outcome"): constants("Run"),
        ("prewarm_store_writes_total", "result"): frozenset(
            v.strip() for v in store.group(1).split(",")),
    }


def contract_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape of prewarmd exposes, with its labels (target labels job and
    instance included)."""
    out: dict[str, frozenset[str]] = {}
    for metric in metric_contract().values():
        for name, labels in metric.series().items():
            out[name] = labels | {"job", "instance"}
    return out


# --------------------------------------------------------------------------------------------
# PromQL scanning

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan", "atan2"}
GROUPING_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
IDENT_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER_RE = re.compile(r"[0-9.][0-9a-zA-Z_.+]*")  # 0.5, 1e3, 5m (durations)
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Selector:
    metric: str
    matchers: str  # the text between the braces, "" when none

    @property
    def text(self) -> str:
        return f"{self.metric}{{{self.matchers}}}" if self.matchers else self.metric

    def labels(self) -> list[str]:
        return [m[0] for m in MATCHER_RE.findall(self.matchers)]


@dataclass
class Scan:
    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: list[str] = field(default_factory=list)  # in by/without/on/ignoring (...)


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" else 1
    return i + 1


def _matching(expr: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket closing the one at expr[i]."""
    depth = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_!r} in {expr!r}")


def scan_promql(expr: str) -> Scan:
    """The vector selectors and grouping labels of a PromQL expression. Grafana variables ($x,
    ${x}) are skipped like literals."""
    scan = Scan()
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "$":
            m = re.compile(r"\$(\{[^}]*\}|\w+)").match(expr, i)
            i = m.end() if m else i + 1
        elif c == "[":
            i = _matching(expr, i, "[", "]")  # range or subquery duration
        elif c.isdigit() or (c == "." and i + 1 < len(expr) and expr[i + 1].isdigit()):
            i = NUMBER_RE.match(expr, i).end()
        elif IDENT_RE.match(expr, i):
            m = IDENT_RE.match(expr, i)
            word = m.group(0)
            j = m.end()
            while j < len(expr) and expr[j].isspace():
                j += 1
            nxt = expr[j] if j < len(expr) else ""
            if word in GROUPING_KEYWORDS:
                if nxt == "(":
                    end = _matching(expr, j, "(", ")")
                    scan.grouping_labels += [l.strip() for l in expr[j + 1:end - 1].split(",")
                                             if l.strip()]
                    i = end
                else:
                    i = j
            elif (word.lower() in PROMQL_KEYWORDS or nxt == "("
                  or re.match(r"(by|without)\s*\(", expr[j:])):
                i = j  # a keyword, a function, or an aggregation ("sum by (x) (...)")
            elif nxt == "{":
                end = _matching(expr, j, "{", "}")
                scan.selectors.append(Selector(word, expr[j + 1:end - 1].strip()))
                i = end
            else:
                scan.selectors.append(Selector(word, ""))
                i = j
        elif c == "{":
            raise AssertionError(f"selector without a metric name in {expr!r}")
        else:
            i += 1
    return scan


def contract_problems(expr: str, contract: Optional[dict[str, frozenset[str]]] = None) -> list[str]:
    """What in `expr` does not exist in prewarmd's metric contract: unknown series names, label
    matchers on labels a series does not have, grouping by labels none of its series have."""
    contract = contract if contract is not None else contract_series()
    values = label_values()
    scan = scan_promql(expr)
    problems = []
    if not scan.selectors:
        problems.append("no metric selector")
    allowed: set[str] = set()
    for sel in scan.selectors:
        if sel.metric not in contract:
            problems.append(f"unknown metric {sel.metric!r}")
            continue
        allowed |= contract[sel.metric]
        for label, op, value in MATCHER_RE.findall(sel.matchers):
            if label not in contract[sel.metric]:
                problems.append(f"{sel.metric} has no label {label!r}")
            known = values.get((sel.metric, label))
            if known is None or "$" in value:
                continue
            # An exact value, or a regex that is an alternation of literals ("miss|late").
            literals = value.split("|") if op in ("=~", "!~") else [value]
            if op in ("=~", "!~") and not all(re.fullmatch(r"[\w-]+", v) for v in literals):
                continue
            for literal in literals:
                if literal not in known:
                    problems.append(f"{sel.metric}{{{label}}} is never {literal!r}: "
                                    f"one of {sorted(known)}")
    for label in scan.grouping_labels:
        if label not in allowed:
            problems.append(f"grouping by {label!r}, which none of its series have")
    return problems


def boolify(expr: str) -> str:
    """`expr` with the `bool` modifier on every comparison with a number (outside selectors and
    strings): filters become 0/1 values, so the expression returns a series for every input series
    whether or not its threshold is crossed."""
    out = []
    i = 0
    ops = ("==", "!=", ">=", "<=", ">", "<")
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            j = _skip_string(expr, i)
            out.append(expr[i:j])
            i = j
            continue
        if c in "{[":
            j = _matching(expr, i, c, "}" if c == "{" else "]")
            out.append(expr[i:j])
            i = j
            continue
        op = next((o for o in ops if expr.startswith(o, i)), None)
        if op is not None:
            rest = expr[i + len(op):]
            if re.match(r"\s*(bool\b)", rest):
                out.append(op)
            elif re.match(r"\s*-?[0-9.]", rest):
                out.append(op + " bool")
            else:
                out.append(op)
            i += len(op)
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Grafana


def grafana_substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces Grafana variables ($name, ${name}, ${name:fmt}) by `values[name]`."""
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"no value for Grafana variable {name!r} in {expr!r}"
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included, rows excluded."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    legend: str


def dashboard_queries(dashboard: Optional[dict[str, Any]] = None) -> list[PanelQuery]:
    dashboard = dashboard or load_dashboard()
    return [PanelQuery(p["title"], t["refId"], t["expr"], t.get("legendFormat", ""))
            for p in dashboard_panels(dashboard) for t in p.get("targets", [])]


def variable_queries(dashboard: Optional[dict[str, Any]] = None) -> list[tuple[str, str]]:
    """(variable name, PromQL) of the dashboard's query variables, label_values(SELECTOR, LABEL)
    written as count by (LABEL) (SELECTOR): what Grafana asks Prometheus for."""
    dashboard = dashboard or load_dashboard()
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
        assert m, f"variable {var['name']}: only label_values(selector, label) is supported: {query}"
        out.append((var["name"], f"count by ({m.group(2)}) ({m.group(1)})"))
    return out


# --------------------------------------------------------------------------------------------
# Alert rules


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


# --------------------------------------------------------------------------------------------
# Kubernetes manifests


LOCAL_CONFIG = "config.kubernetes.io/local-config"


def is_local_config(doc: dict[str, Any]) -> bool:
    """kustomize reads an object annotated local-config but leaves it out of its output
    (deploy/k8s/runbooks.yaml): it is never applied to a cluster."""
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    return annotations.get(LOCAL_CONFIG) == "true"


def load_manifests(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every YAML document of every *.yaml file in `folder` that is applied to the cluster
    (kustomization.yaml and local-config objects excluded)."""
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text())
                if d is not None and not is_local_config(d)]
        if docs:
            out[path.name] = docs
    return out


def by_kind(manifests: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [d for docs in manifests.values() for d in docs if d.get("kind") == kind]


def one(manifests: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def configmap_config() -> dict[str, Any]:
    """The prewarmd JSON config held by deploy/k8s/configmap.yaml, parsed."""
    cm = one(load_manifests(K8S), "ConfigMap")
    (key, text), = cm["data"].items()
    return json.loads(text)
