"""The scenario benchmark: its scoring on hand-made alerts, and a small seeded subset run through the
monitors exactly as ``touchpoint_tools/bench/demand_scenarios.py`` runs them, with the issue's targets asserted."""

from __future__ import annotations

from streams.demand.buckets import iso_utc
from streams.demand.monitor import DemandMonitor
from streams.demand.stage import StageConfig
from touchpoint_tools.simulate.demand_scenarios import (
    DAY_H,
    HISTORY_DAYS,
    HOUR_MS,
    START_MS,
    KeySeries,
    Shift,
    evaluate,
    make_set,
    run_set,
    summarise,
)

FIRST = HISTORY_DAYS * DAY_H


def alert(state: str, hour: int, direction: str, opened: int) -> dict:
    return {"state": state, "bucket_start": iso_utc(START_MS + hour * HOUR_MS), "direction": direction,
            "alert_id": f"k:{opened}:{direction}"}


def test_scoring_of_hand_made_alerts() -> None:
    transient = KeySeries("t", "medium", "surge_transient", [], Shift("surge_transient", 1, FIRST + 10, FIRST + 40, 3.0))
    transient.alerts = [alert("OPEN", FIRST + 12, "surge", 1), alert("RESOLVED", FIRST + 45, "surge", 1),
                        alert("OPEN", FIRST + 50, "collapse", 2)]  # the end of the surge taken for a collapse: false
    late = KeySeries("l", "low", "surge_transient", [], Shift("surge_transient", 1, FIRST + 10, FIRST + 20, 3.0))
    late.alerts = [alert("OPEN", FIRST + 11, "surge", 3), alert("RESOLVED", FIRST + 20 + 49, "surge", 3)]
    persistent = KeySeries("p", "high", "collapse_persistent", [], Shift("collapse_persistent", -1, FIRST + 5, None, 0.4))
    persistent.alerts = [alert("OPEN", FIRST + 5, "collapse", 4), alert("NEW_NORMAL", FIRST + 77, "collapse", 4)]
    missed = KeySeries("m", "low", "ramp", [], Shift("ramp", 1, FIRST, None, 2.0, ramp_h=120))
    control = KeySeries("c", "low", "control", [])
    control.alerts = [alert("OPEN", FIRST - 30, "surge", 5), alert("OPEN", FIRST + 3, "surge", 6)]  # history: not counted
    outcomes, false_opens, key_days = evaluate([transient, late, persistent, missed, control])
    by = {o.key: o for o in outcomes}
    assert (by["t"].detected, by["t"].delay_h, by["t"].lifecycle_right) == (True, 2, True)
    assert (by["l"].detected, by["l"].lifecycle_right) == (True, False)  # resolved more than two days after the end
    assert (by["p"].delay_h, by["p"].lifecycle_right, by["p"].ends) == (0, True, ["NEW_NORMAL"])
    assert (by["m"].detected, by["m"].lifecycle_right) == (False, False)
    assert false_opens == 2 and key_days == 5 * 14
    s = summarise(outcomes, false_opens, key_days)
    assert s["detected"] == 0.75 and s["median_delay_h"] == 1 and s["lifecycle_right"] == 0.5
    assert abs(s["false_per_100_key_days"] - 200 / 70) < 1e-9


def test_a_seeded_subset_meets_the_targets() -> None:
    cfg = StageConfig(bucket_s=3600, lateness_s=3600, timezone="Asia/Shanghai")
    det, lc = cfg.detector_config(), cfg.lifecycle_config("orders")
    series = make_set(7, per_kind=1, controls=2, volumes=("medium", "high"))
    run_set(series, lambda key: DemandMonitor(key, "product", det, lc, "orders"))
    s = summarise(*evaluate(series))
    assert s["shifts"] == 12 and s["key_days"] == 16 * 14
    assert s["detected"] >= 0.9, s
    assert s["median_delay_h"] <= 3, s
    assert s["lifecycle_right"] >= 0.8, s
    assert s["false_per_100_key_days"] <= 1.0, s


def test_finer_buckets_carry_the_same_orders() -> None:
    # run_set(bucket_s=900): each hour's orders spread over its four buckets, none lost or added.
    series = make_set(3, per_kind=0, controls=1, volumes=("medium",))
    seen: list[tuple[int, float]] = []

    class Recorder:
        def update(self, ts_ms: int, count: float) -> tuple[None, list]:
            seen.append((ts_ms, count))
            return None, []

    run_set(series, lambda key: Recorder(), bucket_s=900, seed=3)
    assert len(seen) == 4 * len(series[0].counts)
    assert [t for t, _ in seen[:5]] == [START_MS + i * 900_000 for i in range(5)]
    hourly = [sum(c for _, c in seen[4 * h: 4 * h + 4]) for h in range(len(series[0].counts))]
    assert hourly == series[0].counts
    assert len({c for _, c in seen[:96]}) > 3  # spread, not the whole hour in one bucket


def test_bucket_size_must_divide_an_hour() -> None:
    import pytest

    with pytest.raises(ValueError, match="must divide an hour"):
        run_set(make_set(3, per_kind=0, controls=1, volumes=("low",)), lambda key: None, bucket_s=700)
