"""The worker's metrics: Prometheus conventions, no ``_created`` series, clean under ``promtool check metrics``."""

from __future__ import annotations

import subprocess

from prometheus_client import generate_latest

from streams.observability.metrics import Metrics
from tests.unit.observability.test_deploy import tool


def exposition() -> bytes:
    m = Metrics()
    m.applied.inc()
    m.event_lag.observe(0.2)
    m.consumer_lag.labels("tp.touchpoints", "0").set(3)
    m.demand_alerts_open.labels("category", "orders", "surge").set(1)
    return generate_latest(m.registry)


def test_no_created_series_and_only_our_prefix():
    text = exposition().decode()
    assert "_created" not in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert names and all(n.startswith("touchpoint_") for n in names)
    assert not any(n.endswith(("_ms", "_milliseconds")) for n in names)


def test_required_metrics_exist_with_their_types():
    types = {line.split()[2]: line.split()[3] for line in exposition().decode().splitlines() if line.startswith("# TYPE")}
    for name, kind in {"touchpoint_events_total": "counter", "touchpoint_dead_letters_total": "counter", "touchpoint_identity_merges_total": "counter",
                       "touchpoint_identity_changes_total": "counter", "touchpoint_demand_alerts_open": "gauge",
                       "touchpoint_event_lag_seconds": "histogram", "touchpoint_consumer_lag": "gauge",
                       "touchpoint_stage_seconds": "histogram"}.items():
        assert types.get(name) == kind, name


def test_promtool_finds_no_problem():
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=exposition(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip() and not result.stderr.strip(), result.stdout + result.stderr
