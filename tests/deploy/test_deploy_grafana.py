"""Checks of deploy/grafana: the dashboard is valid JSON that works under file provisioning (every
query goes through the ${datasource} variable, no __inputs placeholders), its layout is sane, it
covers what the issue asks for, every query uses only real metrics and labels; the provisioning
files are valid. Every query is also run against a real Prometheus in test_deploy_live.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

import deploy_helpers as h

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return h.load_dashboard()


def test_dashboard_is_json_with_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    # A provisioned dashboard must not carry a database id.
    assert dashboard.get("id") is None


def test_datasource_variable_works_under_file_provisioning(dashboard: dict[str, Any]) -> None:
    """Dashboards exported "for sharing" use ${DS_...} inputs, which only the import UI fills in;
    under file provisioning they stay unresolved. A datasource-type variable works in both."""
    text = h.DASHBOARD.read_text()
    assert "__inputs" not in dashboard
    assert "${DS_" not in text and "$DS_" not in text
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for name, var in variables.items():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, name


def test_every_panel_and_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    panels = list(h.dashboard_panels(dashboard))
    assert panels
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panel_ids_unique_and_queries_well_formed(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in h.dashboard_panels(dashboard):
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_layout_fits_the_grid_without_overlaps(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0 and pos["y"] >= 0, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_the_issue(dashboard: dict[str, Any]) -> None:
    """Hit rate, cold-start seconds hidden, idle warm container-seconds, warm-up latency by
    service, prediction error, RPC rate/latency/errors, active runs, pending warm-ups: each has a
    panel querying the metric that measures it."""
    queries = h.dashboard_queries(dashboard)

    def panels_using(pattern: str) -> set[str]:
        return {q.panel for q in queries if re.search(pattern, q.expr)}

    assert panels_using(r'prewarm_task_starts_total\{[^}]*outcome="hit"')  # hit rate
    assert panels_using(r"prewarm_cold_start_hidden_seconds_total")
    assert panels_using(r"prewarm_idle_warm_seconds_total")
    assert panels_using(r"by \(service, le\) \(rate\(prewarm_warmup_latency_seconds_bucket")
    assert panels_using(r"prewarm_start_prediction_error_seconds_bucket")
    assert panels_using(r"rate\(prewarm_rpcs_total")  # RPC rate
    assert panels_using(r"prewarm_rpc_duration_seconds_bucket")  # RPC latency
    assert panels_using(r'prewarm_rpcs_total\{[^}]*code!="OK"')  # RPC errors
    assert panels_using(r"prewarm_active_runs")
    assert panels_using(r"prewarm_pending_warmups")


def test_queries_use_only_real_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    contract = h.contract_series()
    problems = {f"{q.panel} {q.ref_id}": h.contract_problems(q.expr, contract)
                for q in h.dashboard_queries(dashboard)}
    assert {k: v for k, v in problems.items() if v} == {}
    for name, query in h.variable_queries(dashboard):
        assert h.contract_problems(query, contract) == [], name


def test_queries_filter_by_the_job_variable(dashboard: dict[str, Any]) -> None:
    for q in h.dashboard_queries(dashboard):
        for selector in h.scan_promql(q.expr).selectors:
            assert 'job=~"$job"' in selector.matchers, f"{q.panel}: {selector.text}"


def test_legends_name_labels_the_query_keeps(dashboard: dict[str, Any]) -> None:
    """A legend {{label}} must name a label the query's result has: a grouping label, or a label
    of the selected series when the query does not aggregate."""
    contract = h.contract_series()
    for q in h.dashboard_queries(dashboard):
        scan = h.scan_promql(q.expr)
        if scan.grouping_labels:
            kept = set(scan.grouping_labels)
        else:
            kept = set.union(*(set(contract[s.metric]) for s in scan.selectors))
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", q.legend):
            assert label in kept, f"{q.panel} {q.ref_id}: legend {{{{{label}}}}} not in {kept}"


def test_provisioning_files() -> None:
    datasources = yaml.safe_load(
        (h.GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert datasources["apiVersion"] == 1
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy" and ds["url"]
    providers = yaml.safe_load(
        (h.GRAFANA / "provisioning" / "dashboards" / "prewarm.yaml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def test_dashboard_json_is_canonical_enough_to_diff() -> None:
    """Stored pretty-printed (one key per line), so reviews see what changed."""
    text = h.DASHBOARD.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
