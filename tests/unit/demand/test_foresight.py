"""Live forecasts per key: buckets summed into hourly steps, alert lifecycle, answers."""

from __future__ import annotations

import json
import random

import pytest

from streams.demand.detector import DetectorConfig
from streams.demand.foresight import Foresight, ForesightConfig
from streams.demand.lifecycle_config import LifecycleConfig
from streams.demand.monitor import DemandMonitor
from touchpoint_tools.simulate.sampling import poisson

from .synth import T0, weekly_mean

FIVE_MIN = 300_000


def demo_state(hours: int = 28 * 24, seed: int = 1, bucket_s: int = 3600):
    """A key fed like the stage feeds it: a short surge (RESOLVED) in week 3, then a lasting
    collapse to a fifth (NEW_NORMAL) for the last 3 days. Returns (foresight, state, alert records,
    the state 6 hours into the last shift)."""
    fs = Foresight(ForesightConfig(bucket_s=bucket_s))
    mon = DemandMonitor("category:masks", "category", DetectorConfig(bucket_s=bucket_s),
                        LifecycleConfig(new_normal_buckets=86400 // bucket_s))
    rng = random.Random(seed)
    per_hour = 3600 // bucket_s
    state, alerts, during = None, [], None
    for b in range(hours * per_hour):
        hour = b // per_hour
        mean = weekly_mean(hour) / per_hour
        if 18 * 24 + 10 <= hour < 18 * 24 + 16:
            mean *= 5
        if hour >= hours - 72:
            mean /= 5
        ts = T0 + b * bucket_s * 1000
        count = poisson(rng, mean)
        decision, records = mon.update(ts, count)
        recs = [r.to_dict() for r in records]
        for rec in recs:
            if rec["state"] == "OPEN":
                rec["forecast"] = fs.alert_forecast(state, rec)
        state = fs.feed(state, ts, count, decision.expected, recs)
        alerts.extend(recs)
        if mon.lifecycle.active and mon.lifecycle.buckets == 6 * per_hour:
            during = state
    return fs, state, alerts, during


@pytest.fixture(scope="module")
def demo():
    return demo_state()


def test_lifecycle_is_summarised_per_shift(demo) -> None:
    fs, state, alerts, _ = demo
    states = [a["state"] for a in alerts]
    assert "OPEN" in states and "RESOLVED" in states and "NEW_NORMAL" in states
    shifts = state["sh"]
    surge = next(s for s in shifts if s["direction"] == "surge" and s["state"] == "RESOLVED")
    assert surge["peak_ratio"] > 2.5 and 0 < surge["hours"] < 24 and surge["ended"] > surge["started"]
    collapse = shifts[-1]
    assert collapse["direction"] == "collapse" and collapse["state"] == "NEW_NORMAL" and collapse["peak_ratio"] < 0.6


def test_after_new_normal_the_forecast_is_at_the_new_level(demo) -> None:
    fs, state, _, _ = demo
    fc = fs.forecast(state, 24)
    assert len(fc) == 24
    n = len(state["h"])  # hourly steps learned so far, the next ones are hours n.. of the series
    hours = 28 * 24
    usual = sum(weekly_mean(hours + h) for h in range(24))
    got = sum(p[1] for p in fc)
    assert 0.1 * usual < got < 0.4 * usual, (got, usual, n)
    assert all(p[4] <= p[2] <= p[1] <= p[3] <= p[5] and p[4] >= 0 for p in fc)


def test_open_alert_carries_the_next_day_if_the_shift_holds(demo) -> None:
    _, _, alerts, _ = demo
    opened = [a for a in alerts if a["state"] == "OPEN"]
    surge = next(a for a in opened if a["direction"] == "surge" and a["forecast"])
    rec = surge["forecast"]
    assert rec["if_shift_holds"] and rec["horizon"] == 24 and len(rec["points"]) == 24
    assert rec["ratio"] == pytest.approx(surge["observed"] / surge["expected"], rel=1e-3)
    assert all(p[4] <= p[1] <= p[5] for p in rec["points"])
    json.dumps(alerts)  # JSON-safe


def test_steps_sum_buckets_and_history_is_bounded() -> None:
    fs = Foresight(ForesightConfig(bucket_s=300, history_steps=5))
    state = None
    for b in range(12 * 10):
        state = fs.feed(state, T0 + b * FIVE_MIN, 2, 2.0)
    assert [h[1] for h in state["h"]] == [24.0] * 5 and state["acc"] is None
    assert fs.summary(state)["last_value"] == 24.0
    state = fs.feed(state, T0 + 120 * FIVE_MIN, 7, None)  # a partial step is not learned yet
    assert state["acc"][1] == 7.0 and len(state["h"]) == 5


def test_state_size_is_bounded(demo) -> None:
    _, state, _, _ = demo
    assert len(json.dumps(state)) < 40_000


def test_open_shift_is_reported(demo) -> None:
    fs, _, _, state = demo  # 6 hours into the collapse
    view = fs.view(state, 48)
    assert view["shift_open"] and view["shift_open"]["direction"] == "collapse"
    assert view["forecast_if_shift_holds"] and len(view["forecast"]) == 48
    assert fs.summary(state)["shift"] == "collapse"


def test_bad_horizon() -> None:
    fs = Foresight()
    with pytest.raises(ValueError, match="between 1 and 168"):
        fs.forecast(None, 169)
    assert fs.forecast(None, 5) == []


def test_feed_many_equals_feeding_one_bucket_at_a_time() -> None:
    fs = Foresight(ForesightConfig(bucket_s=300))
    rng = random.Random(4)
    items = [(T0 + b * FIVE_MIN, poisson(rng, 5.0), 5.0, []) for b in range(12 * 30)]
    items[200] = (items[200][0], items[200][1], 5.0, [{"state": "OPEN", "direction": "surge", "alert_id": "a",
                                                        "observed": 20.0, "expected": 5.0, "severity": 2}])
    items[260] = (items[260][0], items[260][1], 5.0, [{"state": "RESOLVED", "direction": "surge", "alert_id": "a",
                                                        "observed": 5.0, "expected": 5.0, "severity": 2, "buckets_open": 60}])
    one = None
    for item in items:
        one = fs.feed(one, *item)
    many = None
    for i in range(0, len(items), 7):  # closes of 7 buckets at a time
        many = fs.feed_many(many, items[i:i + 7])
    assert one == many
    assert one["sh"][0]["state"] == "RESOLVED" and one["sh"][0]["hours"] == 5.0


@pytest.mark.parametrize("ratio", [float("inf"), -0.5, float("nan")])
def test_an_alert_without_a_usable_level_gets_no_forecast_record(ratio: float) -> None:
    # Revenue shifts can have a negative ratio (refunds), a zero baseline gives an infinite one:
    # the alert goes out without a forecast instead of the record failing (it failed the demand
    # agent's record before: ValueError from Forecaster.forecast).
    fs = Foresight(ForesightConfig(bucket_s=3600))
    state = None
    for h in range(30):
        state = fs.feed(state, T0 + h * 3_600_000, 5.0, 5.0)
    rec = {"state": "OPEN", "direction": "surge", "alert_id": "a", "observed": 9.0, "expected": 0.0, "ratio": ratio}
    assert fs.alert_forecast(state, rec) is None
    assert fs.alert_forecast(state, {**rec, "ratio": None, "expected": -2.0}) is None
    state = fs.feed(state, T0 + 30 * 3_600_000, 9.0, 0.0, [rec])
    assert state["sh"][-1]["peak_ratio"] is None and fs.view(state, 4)["forecast"]
