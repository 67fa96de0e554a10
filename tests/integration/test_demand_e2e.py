"""Demand-shift alerts end to end through Kafka, at accelerated event time.

Four weeks of weekly-seasonal page views (hourly buckets, event times in the past) go into the
input topic as raw Segment JSON; the worker's ingest agent pre-aggregates them into partial
counts and the demand agent turns those into alert records on the alerts topic. Week 4 carries a
short x5 surge (masks in hubei, must RESOLVE), a 30-hour dip (groceries in shanghai, must RESOLVE), a
four-day -70 % collapse (travel in shanghai, must become the NEW_NORMAL after three days) and the
rebound back to the old level (a surge on the re-learned baseline).

The scenario and its assertions live in ``tests/unit/demand/scenario.py``; the fast offline test
``tests/unit/demand/test_scenarios.py`` runs the same counts without Kafka over several seeds
(100 checked while tuning), so this slow test runs one seed without being seed-lucky.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis import Redis as SyncRedis

from streams.cli.send import publish
from streams.kafka.reading import read_to_end
from streams.kafka.topics import ALERTS, INPUT, ensure_topics
from tests.fixtures.stack import run_cli
from tests.unit.demand.scenario import check_alerts, traffic

pytestmark = pytest.mark.integration


def test_surge_collapse_and_rebound_raise_alerts_with_their_lifecycle(settings, start_worker) -> None:
    settings = settings.with_(demand_bucket_s=3600, demand_lateness_s=3600, demand_timezone="UTC")
    events = traffic()
    assert len(events) < 50_000
    worker = start_worker(settings)

    async def send() -> None:
        await ensure_topics(settings)
        # One input partition keeps the input in event-time order, so an hour of lateness is enough
        # (with many partitions the lateness must cover their skew, see docs/demand.md).
        await publish(settings, settings.topic(INPUT), (orjson.dumps(e) for e in events), (b"demo" for _ in events))

    asyncio.run(send())
    idle = run_cli(settings, "wait-idle", "--timeout", "150", timeout_s=170)
    assert idle.returncode == 0, idle.stderr.decode() + worker.log_tail()

    async def collect() -> list[dict[str, Any]]:
        return [orjson.loads(r.value) async for r in read_to_end(settings, settings.topic(ALERTS))]

    alerts = asyncio.run(collect())
    assert alerts, worker.log_tail()
    assert all(a["worker"] and a["bucket_s"] == 3600 for a in alerts)
    check_alerts(alerts)

    status, body = worker.get("/metrics")
    metrics = body.decode()
    assert status == 200 and "touchpoint_demand_errors_total 0.0" in metrics, worker.log_tail()
    assert "touchpoint_demand_late_counts_total 0.0" in metrics  # one input partition, in order
    assert 'touchpoint_demand_alert_transitions_total{measure="interest",state="NEW_NORMAL"}' in metrics
    assert "touchpoint_demand_shared_alerts_errors_total 0.0" in metrics
    # The open alerts shared with other workers (corroboration, open_alerts.py): exactly the
    # series whose last record left their alert open.
    last: dict[str, dict[str, Any]] = {}
    for a in alerts:
        last[f"{a['measure']}/{a['key']}"] = a
    still_open = {k: a["direction"] for k, a in last.items() if a["state"] in ("OPEN", "ESCALATE")}
    client = SyncRedis.from_url(settings.redis_url)
    shared = {k.decode(): v.decode().split(" ")[0] for k, v in client.hgetall(f"{settings.namespace}:demand:open").items()}
    client.close()
    assert still_open  # the traffic ends with its rebound still open: the hash has something to hold
    assert shared == still_open
    assert all(a["measure"] == "interest" for a in alerts)  # page views are interest, not orders

    tail = run_cli(settings, "alerts", "tail", "--from-beginning", "--timeout", "5", "--max", str(len(alerts)))
    assert tail.returncode == 0, tail.stderr.decode()
    lines = tail.stdout.decode().splitlines()
    print("\n".join(lines))
    assert len(lines) == len(alerts)
    assert any("OPEN" in line and "surge" in line and "category_region:masks|hubei" in line for line in lines)


def test_demand_tables_recover_from_the_coalesced_changelog_after_kill9(settings, start_worker) -> None:
    """Three weeks of history through one worker, SIGKILL once it is idle, week 4 through a new
    worker: every alert of week 4 needs the detector state the new worker recovered from the
    changelog records the first one wrote once per key per commit (streams/demand/writes.py)."""
    import signal

    settings = settings.with_(demand_bucket_s=3600, demand_lateness_s=3600, demand_timezone="UTC")
    events = traffic()
    cut = len(events) * 3 // 4  # about the start of week 4: before any shift

    async def send(part: list[dict[str, Any]]) -> None:
        await ensure_topics(settings)
        await publish(settings, settings.topic(INPUT), (orjson.dumps(e) for e in part), (b"demo" for _ in part))

    first = start_worker(settings)
    asyncio.run(send(events[:cut]))
    idle = run_cli(settings, "wait-idle", "--timeout", "150", timeout_s=170)
    assert idle.returncode == 0, idle.stderr.decode() + first.log_tail()
    first.stop(signal.SIGKILL)
    second = start_worker(settings)
    asyncio.run(send(events[cut:]))
    idle = run_cli(settings, "wait-idle", "--timeout", "150", timeout_s=170)
    assert idle.returncode == 0, idle.stderr.decode() + second.log_tail()

    async def collect() -> list[dict[str, Any]]:
        return [orjson.loads(r.value) async for r in read_to_end(settings, settings.topic(ALERTS))]

    alerts = asyncio.run(collect())
    assert alerts, second.log_tail()
    check_alerts(alerts)  # week 4's shifts (judged by the second worker) included
    metrics = second.get("/metrics")[1].decode()
    assert "touchpoint_demand_errors_total 0.0" in metrics and "touchpoint_demand_late_counts_total 0.0" in metrics
    assert 'touchpoint_send_failures_total{kind="changelog"} 0.0' in metrics
