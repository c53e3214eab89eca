"""Checks of deploy/prometheus: promtool check config / check rules / test rules, and every rule
against prewarmd's real metric contract (server/metrics.cc) and the runbook in docs/deploy.md.
The rules are also evaluated against a real Prometheus scraping a real prewarmd in
test_deploy_live.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

import deploy_helpers as h


def test_promtool_check_config(tmp_path: Path) -> None:
    promtool = h.require_tool("promtool")
    result = h.run([promtool, "check", "config", str(h.PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules() -> None:
    promtool = h.require_tool("promtool")
    result = h.run([promtool, "check", "rules", str(h.ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(h.alert_rules())} rules found" in result.stdout, result.stdout


def test_promtool_test_rules() -> None:
    promtool = h.require_tool("promtool")
    # Run from the folder: alerts_test.yml names alerts.yml relative to itself.
    result = h.run([promtool, "test", "rules", h.ALERT_TESTS.name], cwd=h.PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_promtool_test_rules_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests really compare: a copy with one expected annotation changed must fail."""
    promtool = h.require_tool("promtool")
    shutil.copy(h.ALERTS, tmp_path / "alerts.yml")
    text = h.ALERT_TESTS.read_text()
    assert "fail (50%)" in text
    (tmp_path / "alerts_test.yml").write_text(text.replace("fail (50%)", "fail (51%)"))
    result = h.run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert result.returncode != 0, result.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(h.ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in h.alert_rules()}
    assert names - fired == set(), f"alerts never tested firing: {sorted(names - fired)}"
    assert names - quiet == set(), f"alerts never tested quiet: {sorted(names - quiet)}"
    assert (fired | quiet) - names == set(), f"tests of unknown alerts: {sorted((fired | quiet) - names)}"


def test_required_alerts_exist() -> None:
    """The issue's list: server down, warm-up failures, miss rate high, prediction error high,
    store write errors."""
    names = {r["alert"] for r in h.alert_rules()}
    for required in ("PrewarmDown", "PrewarmWarmupFailures", "PrewarmMissRateHigh",
                     "PrewarmPredictionErrorHigh", "PrewarmStoreWriteErrors"):
        assert required in names


@pytest.mark.parametrize("rule", h.alert_rules(), ids=lambda r: r["alert"])
def test_rule_uses_only_real_metrics_and_labels(rule: dict) -> None:
    assert h.contract_problems(rule["expr"]) == []
    # Every selector is scoped to the prewarmd job, so that the rules never match other targets.
    for selector in h.scan_promql(rule["expr"]).selectors:
        assert f'job="{h.JOB}"' in selector.matchers, selector.text


@pytest.mark.parametrize("rule", h.alert_rules(), ids=lambda r: r["alert"])
def test_rule_has_severity_and_runbook(rule: dict) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    doc = h.DEPLOY_DOC.read_text()
    # The runbook anchor is a heading of docs/deploy.md (GitHub's anchors: the heading lowercased).
    anchors = {re.sub(r"[^a-z0-9 -]", "", m.lower()).replace(" ", "-")
               for m in re.findall(r"^#+\s+(.*)$", doc, re.M)}
    url = annotations["runbook_url"]
    # Absolute: Alertmanager and Grafana resolve a relative link against their own host. The base
    # is the one deploy/k8s/runbooks.yaml sets for the PrometheusRule, so that one sed line
    # (docs/deploy.md, section 9) changes both files.
    base, _, anchor = url.partition("#")
    assert base == runbook_base(), url
    assert anchor in anchors, f"{url}: no such heading in docs/deploy.md"


def runbook_base() -> str:
    base = yaml.safe_load((h.K8S / "runbooks.yaml").read_text())["data"]["base_url"]
    assert re.match(r"https://[a-z0-9.-]+\.[a-z]+/", base), base
    assert "#" not in base
    return base


def test_runbook_urls_of_the_unit_tests_are_the_rules() -> None:
    """alerts_test.yml expects the rules' own runbook_url: a changed base changes both."""
    expected = {r["alert"]: r["annotations"]["runbook_url"] for r in h.alert_rules()}
    tests = yaml.safe_load(h.ALERT_TESTS.read_text())
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check.get("exp_alerts", []):
                url = alert["exp_annotations"]["runbook_url"]
                assert url == expected[check["alertname"]], url


def test_documented_sed_line_changes_every_runbook_url(tmp_path: Path) -> None:
    """docs/deploy.md's sed line for Prometheus without the operator: after it, every runbook_url
    in alerts.yml and alerts_test.yml has the new base and promtool's unit tests still pass."""
    promtool = h.require_tool("promtool")
    (line,) = [l for l in h.DEPLOY_DOC.read_text().splitlines()
               if l.startswith("sed -i") and runbook_base() in l]
    shutil.copy(h.ALERTS, tmp_path / "alerts.yml")
    shutil.copy(h.ALERT_TESTS, tmp_path / "alerts_test.yml")
    base = "https://git.example.com/ops/prewarm/-/blob/v1/docs/deploy.md"
    command = line.replace("YOUR_BASE", base).replace("deploy/prometheus/", "")
    result = h.run(["sh", "-c", command], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rules = yaml.safe_load((tmp_path / "alerts.yml").read_text())
    urls = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]]
    assert urls and all(u.startswith(base + "#") for u in urls), urls
    result = h.run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_matches_the_server_and_the_rules() -> None:
    config = yaml.safe_load(h.PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert h.JOB in jobs, f"no scrape job {h.JOB!r}"
    job = jobs[h.JOB]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    # The default target is prewarmd's default metrics address.
    assert targets == [h.default_addresses()["metrics_address"]]
