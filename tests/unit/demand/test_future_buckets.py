"""Issue 21, High 2, defence in depth: a demand count for a bucket from the future (2999) must not
move a partition's event-time clock, which lives in a changelog and would stay in the future.
Before the fix the clock jumped to 2999, and every real count after it was "late" for good."""

from __future__ import annotations

import time

import orjson

from streams.demand.stage import DemandStage, StageConfig
from streams.observability.metrics import Metrics

H = 3_600_000
FAR = 32_472_144_000_000  # 2999-01-01T00:00:00Z


def now_bucket() -> int:
    now = time.time_ns() // 1_000_000
    return now - now % H


def count(key: str, bucket: int, n: int, o: int) -> bytes:
    return orjson.dumps({"k": key, "m": "orders", "b": bucket, "n": n, "p": 0, "o": o})


def test_a_future_bucket_is_refused_and_never_moves_the_clock():
    metrics = Metrics()
    clocks: dict = {}
    stage = DemandStage(StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", max_future_s=300), {}, clocks, metrics)
    start = now_bucket() - 5 * H
    assert stage.handle(0, count("category:masks", start, 10, 1)).status == "applied"
    before = dict(clocks["0"])
    assert stage.handle(0, count("category:masks", FAR, 8, 2)).status == "future"
    assert clocks["0"] == before and metrics.demand_future_counts._value.get() == 1
    # real traffic after the poison is still on time and closes buckets as before
    assert stage.handle(0, count("category:masks", start + 2 * H, 10, 3)).status == "applied"
    assert stage.handle(0, count("category:masks", start + H, 10, 4)).status == "applied"  # within lateness
    assert clocks["0"]["max_b"] == start + 2 * H
    assert metrics.demand_late_counts._value.get() == 0


def test_an_old_past_bucket_is_late_and_moves_nothing():
    clocks: dict = {}
    stage = DemandStage(StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", max_future_s=300), {}, clocks, Metrics())
    start = now_bucket() - 5 * H
    stage.handle(0, count("category:masks", start, 10, 1))
    before = dict(clocks["0"])
    assert stage.handle(0, count("category:masks", 0, 3, 2)).status == "late"  # 1970
    assert clocks["0"] == before
    assert stage.state["orders/category:masks"]["next"] >= before["closed"]  # the key is not rewound to 1970
