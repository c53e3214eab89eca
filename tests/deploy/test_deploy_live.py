"""The dashboard and the alert rules against a real Prometheus scraping a real prewarmd.

One stack for the module: the local scale-to-zero gateway with three services, prewarmd (from the
build tree), and Debian's `prometheus` binary on a free loopback port, configured from
deploy/prometheus/prometheus.yml (scrape and evaluation interval cut to 1 s, the prewarmd job's
target pointed at the real metrics port, rule_files at deploy/prometheus/alerts.yml), with its
TSDB in a temporary directory. A small workflow (the seed chain at a tenth of its scale) runs
through prewarmd and the gateway a few times, with ReportTiming events, until prewarmd's warm-ups
have been fired and hit; one GetPlan for an unknown run, first, gives the error panels a
NOT_FOUND.

Then every dashboard query and every alert expression goes through Prometheus's HTTP API
(/api/v1/query), Grafana's variables replaced by concrete values ($__rate_interval by 1m,
$__range by 5m, $job by the scrape job, $service by the "All" regex):

- a dashboard query must succeed and return at least one series, and its legend's {{labels}}
  must be labels of the series it returns;
- an alert expression normally returns nothing (nothing is wrong), so "no series" would not tell a
  wrong metric name from a quiet alert. Each one is therefore checked three ways: the expression
  as written must evaluate without error; every vector selector in it, alone, must return series
  (a misspelt metric or label value returns none); and the expression with the `bool` modifier
  added to each of its threshold comparisons (`x > 0.1` becomes `x > bool 0.1`, which keeps every
  series as 0 or 1 instead of filtering) must return series -- the whole expression, joins and
  aggregations included, then has data under it. absent(...) rules are the exception: they return
  a series exactly when their selector has none, so theirs must return nothing here;
- Prometheus must have loaded every rule and evaluated it without error (/api/v1/rules);
- finally prewarmd is stopped and PrewarmDown must go pending: the rule fires on real data.

A second Prometheus scrapes the same prewarmd the way the Prometheus Operator would from
deploy/k8s/servicemonitor.yaml: the scrape job the operator generates for its endpoint
(conformance.operator_scrape_config: honor_labels, path and port from the manifest, the operator's
relabeling unchanged), with the Kubernetes discovery replaced by one static target that carries
the __meta_kubernetes_* labels the discovery would give prewarmd's pod behind the Service. There
the per-service series must keep their own service label and PrewarmWarmupFailures must group by
the real services. A control job, the same ServiceMonitor without honorLabels (and a Service of
another name, so that its job differs), shows what the check guards against: every series
service="<Service name>", the real one moved to exported_service.

Takes about 30 s. Every process is stopped at the end, also on failure (and killed by the kernel
if this interpreter dies: the harness's PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import conformance
import deploy_helpers as h
from deploy_helpers import harness

GRAFANA_VALUES = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s",
                  "job": h.JOB, "service": ".*", "datasource": "prometheus"}
INIT_SECONDS = 0.1
KEEP_ALIVE_SECONDS = 2.0
MIN_RUNS = 2
MAX_RUNS = 6
# The operator-shaped scrape: the pod behind the Service, and the control job's Service name.
POD = "prewarmd-7c9d8b6f5-x2x4q"
NO_HONOR_JOB = "prewarmd-nohonor"


@dataclass
class PrometheusAPI:
    port: int

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:  # 4xx with an error body: a bad query
            return json.load(err)

    def query(self, promql: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=promql)

    def series(self, promql: str) -> list[dict[str, Any]]:
        result = self.query(promql)
        assert result["status"] == "success", f"{promql}: {result.get('error')}"
        return result["data"]["result"]

    def value(self, promql: str) -> float:
        series = self.series(promql)
        return float(series[0]["value"][1]) if series else 0.0


@dataclass
class Stack(PrometheusAPI):
    """The Prometheus of deploy/prometheus/prometheus.yml (this object's own API), and the one
    configured like the Prometheus Operator (`operator`)."""
    prewarmd: harness.Prewarmd
    gateway: harness.Gateway
    runs: int
    log_dir: Path
    operator: PrometheusAPI
    services: list[str]


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    return harness.wait_for(predicate, timeout=timeout, interval=0.1, what=what)


def prometheus_config(metrics_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, made to scrape the test's prewarmd every second."""
    config = yaml.safe_load(h.PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(h.PROMETHEUS / f) for f in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == h.JOB]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    return config


def operator_prometheus_config(metrics_port: int) -> dict[str, Any]:
    """The Prometheus Operator's scrape job for deploy/k8s's ServiceMonitor (as kustomize renders
    it) against the test's prewarmd, scraped every second; and the control job without
    honorLabels."""
    objects = conformance.render_k8s()
    (monitor,) = conformance.objects_by_kind(objects, "ServiceMonitor")
    (service,) = conformance.objects_by_kind(objects, "Service")
    (deployment,) = conformance.objects_by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    fast = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    address = f"127.0.0.1:{metrics_port}"
    control_monitor = json.loads(json.dumps(monitor))
    control_monitor["metadata"]["name"] = NO_HONOR_JOB
    for endpoint in control_monitor["spec"]["endpoints"]:
        endpoint.pop("honorLabels", None)
    control_service = json.loads(json.dumps(service))
    control_service["metadata"]["name"] = NO_HONOR_JOB
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            conformance.operator_scrape_config(monitor, 0, service, POD, container["name"],
                                               address, fast),
            conformance.operator_scrape_config(control_monitor, 0, control_service, POD,
                                               container["name"], address, fast),
        ],
    }


def start_prometheus(binary: str, workdir: Path, config: dict[str, Any]) -> tuple[Any, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    for _ in range(3):  # the free port may be taken between choosing and binding it
        port = h.free_port()
        log_start = log.stat().st_size if log.exists() else 0
        process = harness._spawn(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"], log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return process, port
            except OSError:
                pass
            time.sleep(0.1)
        harness._stop(process, signal.SIGKILL)
        if "address already in use" not in log.read_text(errors="replace")[log_start:]:
            break
    raise RuntimeError("prometheus did not become ready (its log is printed below)")


def run_workflow(prewarmd: harness.Prewarmd, gateway: harness.Gateway) -> int:
    """Runs the seed chain under prewarmd until its warm-ups have been fired and hit (at least
    MIN_RUNS runs, at most MAX_RUNS); returns the number of runs."""
    workflow = harness.seed_chain(0.1)
    # First, a scheduler asking for a run prewarmd does not know: a NOT_FOUND for the error
    # panels, early, so that Prometheus has several samples of its series by the end.
    with pytest.raises(harness.grpc.RpcError) as err:
        prewarmd.client().GetPlan(harness.pb2.GetPlanRequest(run_id="no-such-run"))
    assert err.value.code() == harness.grpc.StatusCode.NOT_FOUND
    runner = harness.WorkflowRunner(gateway, prewarmd.client())
    runner.register_services(workflow.services())
    runs = 0
    while runs < MAX_RUNS:
        result = runner.run(workflow, "prewarm")
        runs += 1
        assert result.ok, result.describe()
        assert not result.report_errors, result.report_errors
        runner.settle(result)
        if runs >= MIN_RUNS and prewarmd.metric("prewarm_task_starts_total", outcome="hit") > 0:
            break
    return runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    harness.require_build_products()
    prometheus = h.require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("live")
    workflow = harness.seed_chain(0.1)
    gateway = harness.Gateway(workdir / "gateway", [
        harness.GatewayService(s, INIT_SECONDS, KEEP_ALIVE_SECONDS) for s in workflow.services()])
    prewarmd = harness.Prewarmd(workdir / "prewarmd")
    processes = []
    try:
        gateway.start()
        prewarmd.start()
        process, port = start_prometheus(prometheus, workdir,
                                         prometheus_config(prewarmd.metrics_port))
        processes.append(process)
        process, operator_port = start_prometheus(
            prometheus, workdir / "operator", operator_prometheus_config(prewarmd.metrics_port))
        processes.append(process)
        stack = Stack(port, prewarmd, gateway, 0, workdir, PrometheusAPI(operator_port),
                      workflow.services())
        for api in (stack, stack.operator):
            wait_for(lambda: api.value(f'up{{job="{h.JOB}"}}') == 1, 20, "prewarmd scraped")
        stack.runs = run_workflow(prewarmd, gateway)
        # Both have scraped the end of the workflow: they have every ReportTiming prewarmd
        # counted.
        reports = prewarmd.metric("prewarm_rpcs_total", method="ReportTiming")
        for api in (stack, stack.operator):
            wait_for(lambda: api.value(
                f'sum(prewarm_rpcs_total{{job="{h.JOB}", method="ReportTiming"}})') == reports,
                20, "the last scrape")
        yield stack
    except BaseException:
        for log in sorted(workdir.rglob("*.log")):
            print(f"\n----- {log.relative_to(workdir)} -----\n"
                  f"{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        for process in processes:
            harness._stop(process, signal.SIGTERM, timeout=10)
        prewarmd.stop()
        gateway.stop()


def test_prometheus_scrapes_prewarmd_cleanly(stack: Stack) -> None:
    targets = stack.api("/api/v1/targets")["data"]["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == h.JOB]
    assert target["health"] == "up" and target["lastError"] == "", target


def test_the_workflow_was_warmed(stack: Stack) -> None:
    """What the dashboard is for actually happened: warm-ups fired, answered and hit."""
    job = f'job="{h.JOB}"'
    assert stack.value(f'sum(prewarm_runs_started_total{{{job}}})') == stack.runs
    assert stack.value(f'sum(prewarm_warmups_total{{{job}, result="fired"}})') > 0
    assert stack.value(f'sum(prewarm_warmups_total{{{job}, result="ready"}})') > 0
    assert stack.value(f'sum(prewarm_task_starts_total{{{job}, outcome="hit"}})') > 0
    assert stack.value(f'sum(prewarm_cold_start_hidden_seconds_total{{{job}}})') > 0


def test_every_dashboard_query_returns_series(stack: Stack) -> None:
    failures = []
    for q in h.dashboard_queries():
        promql = h.grafana_substitute(q.expr, GRAFANA_VALUES)
        result = stack.query(promql)
        where = f"{q.panel} [{q.ref_id}] {promql}"
        if result["status"] != "success":
            failures.append(f"{where}: error {result.get('error')}")
            continue
        series = result["data"]["result"]
        if not series:
            failures.append(f"{where}: no series")
            continue
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", q.legend):
            if not all(label in s["metric"] for s in series):
                failures.append(f"{where}: legend label {label!r} missing from the result")
        for selector in h.scan_promql(promql).selectors:
            if not stack.series(selector.text):
                failures.append(f"{where}: selector {selector.text} has no series")
    assert not failures, "\n".join(failures)


def test_every_dashboard_variable_has_values(stack: Stack) -> None:
    for name, promql in h.variable_queries():
        promql = h.grafana_substitute(promql, GRAFANA_VALUES)
        assert stack.series(promql), f"variable {name}: {promql} has no values"
    # The job variable offers the job the rules use.
    assert {s["metric"]["job"] for s in stack.series("count by (job) (prewarm_build_info)")} \
        == {h.JOB}


def test_every_alert_expression_evaluates_on_real_series(stack: Stack) -> None:
    failures = []
    for rule in h.alert_rules():
        name, expr = rule["alert"], rule["expr"]
        result = stack.query(expr)
        if result["status"] != "success":
            failures.append(f"{name}: {expr}: error {result.get('error')}")
            continue
        for selector in h.scan_promql(expr).selectors:
            if not stack.series(selector.text):
                failures.append(f"{name}: selector {selector.text} has no series")
        unfiltered = h.boolify(expr)
        series = stack.series(unfiltered)
        if expr.lstrip().startswith("absent("):
            if series:
                failures.append(f"{name}: {expr} returns a series: its target is missing")
        elif not series:
            failures.append(f"{name}: {unfiltered}: no series")
    assert not failures, "\n".join(failures)


def test_prometheus_loaded_and_evaluated_every_rule(stack: Stack) -> None:
    expected = {r["alert"] for r in h.alert_rules()}

    def rules() -> dict[str, dict[str, Any]]:
        groups = stack.api("/api/v1/rules")["data"]["groups"]
        return {r["name"]: r for g in groups for r in g["rules"]}

    def all_evaluated() -> bool:
        loaded = rules()
        return set(loaded) == expected and all(
            not r["lastEvaluation"].startswith("0001") for r in loaded.values())

    wait_for(all_evaluated, 20, "every rule evaluated")
    for name, rule in rules().items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
    # A healthy, warmed workflow fires nothing.
    firing = [a for a in stack.api("/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]
    assert firing == []


def test_operator_scrape_has_the_operators_target_labels(stack: Stack) -> None:
    """The operator-shaped job really relabels like the operator: job from the Service name, and
    namespace, service, pod, container and endpoint on the target."""
    (up,) = stack.operator.series(f'up{{job="{h.JOB}"}}')
    labels = up["metric"]
    assert labels["job"] == h.JOB and labels["service"] == h.JOB, labels
    assert labels["namespace"] == "prewarm" and labels["endpoint"] == "metrics", labels
    assert labels["pod"] == POD and labels["container"] == "prewarmd", labels
    assert set(labels) >= conformance.OPERATOR_TARGET_LABELS, labels
    targets = stack.operator.api("/api/v1/targets")["data"]["activeTargets"]
    assert {t["health"] for t in targets} == {"up"}, targets


def per_service(api: PrometheusAPI, promql: str) -> list[dict[str, str]]:
    return [s["metric"] for s in api.series(promql)]


def test_operator_scrape_keeps_the_per_service_series(stack: Stack) -> None:
    """With the ServiceMonitor's honorLabels, prewarmd's per-service series keep their service
    label (as with the plain prometheus.yml), and nothing is renamed to exported_service."""
    query = f'count by (service, exported_service) (prewarm_warmups_total{{job="{h.JOB}"}})'
    operator = per_service(stack.operator, query)
    assert not any("exported_service" in m for m in operator), operator
    assert {m["service"] for m in operator} == set(stack.services), operator
    assert {m["service"] for m in per_service(stack, query)} == set(stack.services)
    # Series without a service label of their own carry the target's: the Service's name.
    rpcs = per_service(stack.operator, f'count by (service) (prewarm_rpcs_total{{job="{h.JOB}"}})')
    assert rpcs == [{"service": h.JOB}], rpcs


def warmup_failures_services(api: PrometheusAPI, job: str) -> list[str]:
    (rule,) = [r for r in h.alert_rules() if r["alert"] == "PrewarmWarmupFailures"]
    expr = h.boolify(rule["expr"]).replace(f'job="{h.JOB}"', f'job="{job}"')
    return sorted(m.get("service", "") for m in per_service(api, expr))


def test_warmup_failures_alert_groups_by_the_real_services(stack: Stack) -> None:
    """PrewarmWarmupFailures (sum by (job, service)), unfiltered, has one series per warmed
    service behind the operator's relabeling: a failing service fires its own alert."""
    assert warmup_failures_services(stack.operator, h.JOB) == sorted(stack.services)


def test_without_honor_labels_every_series_is_the_services(stack: Stack) -> None:
    """The control job: without honorLabels the operator's service label wins, the real one is
    renamed, and PrewarmWarmupFailures collapses to one series. This is what the two tests above
    would see if servicemonitor.yaml lost honorLabels."""
    query = f'count by (service, exported_service) (prewarm_warmups_total{{job="{NO_HONOR_JOB}"}})'
    series = per_service(stack.operator, query)
    assert {m["service"] for m in series} == {NO_HONOR_JOB}, series
    assert {m["exported_service"] for m in series} == set(stack.services), series
    assert warmup_failures_services(stack.operator, NO_HONOR_JOB) == [NO_HONOR_JOB]


def test_prewarm_down_goes_pending_when_prewarmd_stops(stack: Stack) -> None:
    """Last: stops prewarmd. PrewarmDown (for: 2m) must go pending on the failed scrapes."""
    stack.prewarmd.stop()
    wait_for(lambda: stack.value(f'up{{job="{h.JOB}"}}') == 0 and True, 20, "up == 0")

    def pending() -> list[dict[str, Any]]:
        return [a for a in stack.api("/api/v1/alerts")["data"]["alerts"]
                if a["labels"]["alertname"] == "PrewarmDown" and a["state"] == "pending"]

    (alert,) = wait_for(pending, 20, "PrewarmDown pending")
    assert alert["labels"]["job"] == h.JOB
    assert alert["labels"]["severity"] == "critical"
