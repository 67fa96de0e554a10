"""Observability against real tools: promtool on a live worker's /metrics, a real Prometheus
scraping it, and the on-call page rendered by headless Chromium during a simulated demand shift.

Binaries come from Debian's ``prometheus`` and ``chromium`` packages; without them the tests skip,
except under CI (CI=true) where a missing binary fails. Every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import ROOT, free_port, run_cli
from tests.unit.observability.test_deploy import tool

pytestmark = pytest.mark.integration

RULES = ROOT / "deploy" / "prometheus" / "rules" / "touchpoint.yml"


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError as exc:  # not listening yet, or a transient connection error
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


class Prometheus:
    """Debian's prometheus binary on a free loopback port with a generated config."""

    def __init__(self, home: Path, target: str) -> None:
        self.port = free_port()
        config = home / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}']\n"
            "scrape_configs:\n"
            "  - job_name: touchpoint\n"
            "    scrape_timeout: 1s\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = open(home / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def test_promtool_and_a_real_prometheus_see_a_live_worker(settings, start_worker, tmp_path):
    worker = start_worker(settings)
    status, body = worker.get("/metrics")
    assert status == 200
    assert b"_created" not in body
    check = subprocess.run([tool("promtool"), "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr
    # The lag sampler publishes the worker's assigned input partitions within a few seconds.
    wait_for(lambda: settings.topic("touchpoints").encode() in worker.get("/metrics")[1], 30, "touchpoint_consumer_lag series")

    prom = Prometheus(tmp_path, f"127.0.0.1:{settings.web_port}")
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{prom.port}/-/ready", timeout=2).status == 200, 60, "prometheus ready")
        wait_for(lambda: prom.value('up{job="touchpoint"}') == 1.0, 30, "up == 1")
        before = wait_for(lambda: prom.query('sum(touchpoint_events_total{job="touchpoint"})'), 30, "the events counter scraped")
        assert float(before[0]["value"][1]) == 0.0
        sim = run_cli(settings, "simulate", "--events", "500", "--people", "100", timeout_s=120)
        assert sim.returncode == 0, sim.stderr.decode()
        moved = wait_for(lambda: (prom.value('sum(touchpoint_events_total{job="touchpoint"})') or 0) >= 500, 90,
                         "touchpoint_events_total to reach 500 in Prometheus")
        assert moved
        applied = prom.value('touchpoint_events_total{job="touchpoint", outcome="applied"}')
        assert applied and applied > 0
        # The recording rules load and evaluate against real series.
        wait_for(lambda: prom.value('job:touchpoint_events_in:rate5m{job="touchpoint"}'), 30, "a recorded ingest rate")
        lag = prom.query(f'touchpoint_consumer_lag{{topic="{settings.topic("touchpoints")}"}}')
        assert {r["metric"]["partition"] for r in lag} == {"0", "1"}
        rules = json.load(urllib.request.urlopen(f"http://127.0.0.1:{prom.port}/api/v1/rules", timeout=5))
        health = {r["name"]: r["health"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert health and all(h in ("ok", "unknown") for h in health.values()), health
    finally:
        prom.stop()
    assert prom.proc.returncode is not None


class DomText(HTMLParser):
    """Rows, attributes and text of the rendered on-call page."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def render(url: str, profile: Path, shot: Path) -> DomText:
    """The page's DOM after its scripts ran, from headless Chromium (plus a screenshot for humans)."""
    chromium = tool("chromium")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
              f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--window-size=1300,1600"]
    dump = subprocess.run([*common, "--dump-dom", url], capture_output=True, timeout=90)
    assert dump.returncode == 0, dump.stderr.decode()[-2000:]
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=90)
    dom = DomText()
    dom.feed(dump.stdout.decode())
    return dom


CRISIS_CATEGORIES = ("masks", "sanitizer", "online_courses")


def test_oncall_page_in_chromium_during_a_simulated_demand_shift(settings, start_worker, tmp_path):
    # Hourly buckets and a fixed start: two and a half normal days (demand alerts need two days of
    # history), then the crisis (masks x5 in hubei from hour 66, sanitizer x4 from hour 68, online
    # courses x2.5 from hour 72), so the surges are open at the end.
    # The simulated day is published in seconds over two input partitions, which the worker drains
    # at different paces: their event times drift apart by hours, so allow 4 h of lateness or the
    # lagging partition's counts arrive after their buckets closed (counted as late, not alerted on).
    settings = settings.with_(demand_bucket_s=3600, demand_lateness_s=4 * 3600, demand_timezone="UTC")
    worker = start_worker(settings)
    sim = run_cli(settings, "simulate", "--events", "10000", "--people", "800", "--scenario", "crisis", "--spacing-ms", "13500",
                  "--start", "2026-01-05T00:00:00Z", "--scenario-start", "2026-01-07T12:00:00Z", "--malformed", "0.02",
                  "--seed", "7", timeout_s=180)
    assert sim.returncode == 0, sim.stderr.decode()
    idle = run_cli(settings, "wait-idle", "--timeout", "120", timeout_s=140)
    assert idle.returncode == 0, idle.stderr.decode() + worker.log_tail()

    def data() -> dict[str, Any] | None:
        status, body = worker.get("/oncall/data")
        d = json.loads(body) if status == 200 else None
        return d if d and d["alerts_open"] and d["changes"] and len(d["rates"]) >= 2 else None

    snapshot = wait_for(data, 60, "open alerts, merges and rates in /oncall/data", every_s=1.0)
    surges = [a for a in snapshot["alerts_open"] if a["direction"] == "surge" and any(c in a["key"] for c in CRISIS_CATEGORIES)]
    assert surges, [a["key"] for a in snapshot["alerts_open"]]

    dom = render(worker.url + "/oncall", tmp_path / "chromium", tmp_path / "oncall.png")
    [status] = dom.find("div", id="status")
    assert status["data-state"] == "ok", " ".join(dom.text)
    assert dom.find("body", data_loaded="true")
    [alerts] = dom.find("section", id="alerts")
    assert int(alerts["data-count"]) == len(snapshot["alerts_open"]) >= 1
    rows = dom.find("tr", **{"class": "alert"})
    shown = {r["data-key"]: r for r in rows}
    for alert in surges:
        row = shown[alert["key"]]  # every crisis surge is on the page, with observed above expected
        assert row["data-direction"] == "surge" and row["data-state"] in ("OPEN", "ESCALATE")
        assert float(row["data-observed"]) > float(row["data-expected"])
    # observed and expected are drawn over time for each open alert
    lines = [a for t, a in dom.elements if t == "polyline" and a.get("data-series") in ("observed", "expected")]
    assert {a["data-series"] for a in lines} == {"observed", "expected"}
    assert len([a for a in lines if a["data-series"] == "observed"]) == len(rows)
    # recent merges from identity.changes, and ingest / dead-letter rates
    merges = dom.find("tr", **{"class": "change", "data_type": "merged"})
    assert merges, "no merge shown"
    cards = {c["data-rate"]: c for c in dom.find("div", **{"class": "card"}) if "data-rate" in c}
    assert {"in", "dlq", "local_applied", "local_dead_lettered"} <= set(cards)
    text = " ".join(dom.text)
    assert "Open demand alerts" in text and "Recent merges and quarantines" in text
    assert surges[0]["key"] in text
