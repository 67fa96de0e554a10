"""Demand-shift alerts end to end through Kafka, at accelerated event time.

Four weeks of weekly-seasonal page views (hourly buckets, event times in the past) go into the
input topic as raw Segment JSON; the worker's ingest agent pre-aggregates them into partial
counts and the demand agent turns those into alert records on the alerts topic. Week 3 carries a
short x5 surge (masks in hubei, must RESOLVE), a long -70 % collapse (travel in shanghai, must
become the NEW_NORMAL) and the rebound back to the old level (a surge on the re-learned baseline).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.cli.send import publish
from streams.kafka.reading import read_to_end
from streams.kafka.topics import ALERTS, INPUT, ensure_topics
from tests.fixtures.stack import run_cli

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
START_MS = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)  # a Monday
WEEKS = 4
NORMAL_WEEKS = 3
# Base page views per hour at the daily peak, per (category, region).
RATES = {("masks", "hubei"): 18.0, ("masks", "shanghai"): 12.0, ("travel", "hubei"): 10.0,
         ("travel", "shanghai"): 40.0, ("groceries", "hubei"): 14.0, ("groceries", "shanghai"): 16.0}
SURGE = ("masks", "hubei", 5.0, NORMAL_WEEKS * 168 + 10, 8)          # Mon 10:00, 8 h: resolves
COLLAPSE = ("travel", "shanghai", 0.3, NORMAL_WEEKS * 168 + 59, 40)  # Wed 11:00, 40 h: new normal
REBOUND_HOUR = COLLAPSE[3] + COLLAPSE[4]                            # Fri 03:00, back to 1.0
SHIFT_KEYS = {"category_region:masks|hubei", "category:masks", "region:hubei",
              "category_region:travel|shanghai", "category:travel", "region:shanghai", "channel:web"}


def shape(hour: int) -> float:
    """Relative traffic of an hour of the week: quiet nights, a midday and an evening peak, busier weekends."""
    h, day = hour % 24, (hour // 24) % 7
    daily = 0.35 + 0.45 * math.exp(-((h - 12) ** 2) / 8) + 0.65 * math.exp(-((h - 20) ** 2) / 6)
    return daily * (1.3 if day >= 5 else 1.0)


def factor(category: str, region: str, hour: int) -> float:
    f = 1.0
    for cat, reg, mult, start, length in (SURGE, COLLAPSE):
        if cat == category and reg == region and start <= hour < start + length:
            f *= mult
    return f


def poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def traffic(seed: int = 5) -> list[dict[str, Any]]:
    """Page views in event-time order, hour by hour."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for hour in range(WEEKS * 168):
        batch = []
        for (category, region), rate in RATES.items():
            for _ in range(poisson(rng, rate * shape(hour) * factor(category, region, hour))):
                batch.append((START_MS + hour * HOUR_MS + rng.randrange(HOUR_MS), category, region))
        for ts, category, region in sorted(batch):
            n = len(out)
            stamp = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            out.append({"type": "page", "messageId": f"dm-{seed}-{n}", "anonymousId": f"visitor-{rng.randrange(400)}",
                        "timestamp": stamp, "channel": "web", "name": f"{category} listing", "category": category,
                        "properties": {"category": category, "region": region}})
    return out


def hour_of(iso: str) -> int:
    ts = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    return (ts - START_MS) // HOUR_MS


def check_alerts(alerts: list[dict[str, Any]]) -> None:
    """The assertions of the scenario, shared with the offline tuning run."""
    opens = [a for a in alerts if a["state"] == "OPEN"]
    # Normal weeks after the cold-start week: at most one false OPEN per key and week.
    per_key_week = Counter((a["key"], hour_of(a["bucket_start"]) // 168) for a in opens if 168 <= hour_of(a["bucket_start"]) < NORMAL_WEEKS * 168)
    assert all(n <= 1 for n in per_key_week.values()), per_key_week

    def first_open(key: str, direction: str, start: int, within: int) -> dict[str, Any]:
        found = [a for a in opens if a["key"] == key and a["direction"] == direction and start <= hour_of(a["bucket_start"]) < start + within]
        assert found, f"no {direction} OPEN on {key} within {within} buckets of hour {start}"
        return found[0]

    surge = first_open("category_region:masks|hubei", "surge", SURGE[3], 3)
    collapse = first_open("category_region:travel|shanghai", "collapse", COLLAPSE[3], 6)
    rebound = first_open("category_region:travel|shanghai", "surge", REBOUND_HOUR, 6)
    assert first_open("category:masks", "surge", SURGE[3], 3)
    by_id: dict[str, list[str]] = {}
    for a in alerts:
        by_id.setdefault(a["alert_id"], []).append(a["state"])
    assert by_id[surge["alert_id"]][-1] == "RESOLVED", by_id[surge["alert_id"]]
    assert by_id[collapse["alert_id"]][-1] == "NEW_NORMAL", by_id[collapse["alert_id"]]
    assert rebound["alert_id"] in by_id
    # Nothing opens on keys the shifts do not touch, after the first (cold-start) week.
    untouched = [a for a in opens if a["key"] not in SHIFT_KEYS and hour_of(a["bucket_start"]) >= NORMAL_WEEKS * 168]
    assert len(untouched) <= 2, untouched


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
    assert 'touchpoint_demand_alert_transitions_total{state="NEW_NORMAL"}' in metrics

    tail = run_cli(settings, "alerts", "tail", "--from-beginning", "--timeout", "5", "--max", str(len(alerts)))
    assert tail.returncode == 0, tail.stderr.decode()
    lines = tail.stdout.decode().splitlines()
    print("\n".join(lines))
    assert len(lines) == len(alerts)
    assert any("OPEN" in line and "surge" in line and "category_region:masks|hubei" in line for line in lines)
