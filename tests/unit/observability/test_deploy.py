"""deploy/: Prometheus config and rules (promtool), Alertmanager routing (amtool), the Grafana dashboard.

The binaries come from Debian's ``prometheus`` and ``prometheus-alertmanager`` packages
(scripts/install-system-deps.sh). Without them the tests skip, except under CI where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "touchpoint.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "touchpoint_test.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "touchpoint.json"


def tool(name: str) -> str:
    """Path of a required binary; skip when missing, but fail under CI (CI=true)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing (scripts/install-system-deps.sh installs it)")
        pytest.skip(f"{name} not installed")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=ROOT)


def alerting_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def recorded_names() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_prometheus_configs_are_valid(config):
    result = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules/touchpoint.yml" in result.stdout  # the rule files are found and checked too


def test_rules_are_valid_and_their_unit_tests_pass():
    promtool = tool("promtool")
    check = run(promtool, "check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_rule_test_fails(tmp_path):
    """The rule tests really assert: a wrong expectation makes promtool fail."""
    promtool = tool("promtool")
    doc = yaml.safe_load(RULE_TESTS.read_text())
    doc["rule_files"] = [str(RULES)]
    doc["tests"][0]["alert_rule_test"][1]["exp_alerts"][0]["exp_labels"]["severity"] = "info"
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(doc))
    assert run(promtool, "test", "rules", str(broken)).returncode != 0


def test_every_alert_has_for_severity_team_summary_runbook_and_a_unit_test():
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case.get("alert_rule_test", [])}
    firing_tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
                     for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    rules = alerting_rules()
    names = {r["alert"] for r in rules}
    assert {"TouchpointConsumerLagGrowing", "TouchpointDeadLettersRising", "TouchpointNoEvents", "TouchpointWorkerDown",
            "TouchpointDemandAlertOpen"} <= names
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["labels"].get("team"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook_url"].startswith("https://"), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert f"### {rule['alert']}" in (ROOT / "docs" / "observability.md").read_text() and anchor == rule["alert"].lower()
    assert names <= tested and names <= firing_tested, names - firing_tested


def test_recording_rules_follow_level_metric_operations():
    for name in recorded_names():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), name


def test_alertmanager_config_is_valid():
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"alertname": "TouchpointWorkerDown", "severity": "critical", "team": "platform"}, "oncall-pager"),
    ({"alertname": "TouchpointNoWorkers", "severity": "critical", "team": "data"}, "oncall-pager"),
    ({"alertname": "TouchpointDeadLettersRising", "severity": "warning", "team": "data"}, "data-chat"),
    ({"alertname": "TouchpointConsumerLagGrowing", "severity": "warning", "team": "platform"}, "platform-chat"),
    ({"alertname": "TouchpointDemandAlertOpen", "severity": "info", "team": "demand"}, "demand-chat"),
    ({"alertname": "TouchpointIdentityQuarantine", "severity": "info", "team": "identity"}, "identity-chat"),
    ({"alertname": "DemandShift", "severity": "4", "dimension": "category", "key": "category:masks"}, "demand-chat"),
    ({"alertname": "SomethingElse"}, "platform-chat"),
])
def test_alertmanager_routes_by_severity_then_team(labels, receiver):
    amtool = tool("amtool")
    args = [f"{k}={v}" for k, v in labels.items()]
    result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", f"--verify.receivers={receiver}", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_rules_route_to_a_team_alertmanager_knows():
    routed = {m.split('"')[1] for r in yaml.safe_load(ALERTMANAGER.read_text())["route"]["routes"]
              for m in r["matchers"] if m.startswith("team=")}
    assert {r["labels"]["team"] for r in alerting_rules()} <= routed


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(touchpoint_[a-z_]+|[a-z_]+:touchpoint_[a-z_]+:[a-z0-9_]+)", expr))


def exported_names() -> set[str]:
    out: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in Metrics().registry.collect():  # labelled metrics without children have no samples yet
        out |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return out


def test_dashboard_covers_every_area_and_only_uses_metrics_that_exist():
    dash = json.loads(DASHBOARD.read_text())
    rows = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert {"Ingest", "Identity", "Profiles", "Demand", "Lag"} <= rows
    known = exported_names() | recorded_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, "no queries found"
    assert used <= known, f"dashboard queries unknown metrics: {used - known}"
    for rule in yaml.safe_load(RULES.read_text())["groups"]:
        for r in rule["rules"]:
            assert metric_names(r["expr"]) <= known, (r, metric_names(r["expr"]) - known)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"]


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "touchpoint.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
