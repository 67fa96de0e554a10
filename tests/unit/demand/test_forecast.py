"""The streaming forecaster: seasonality, calibrated intervals, counts, lifecycle hooks, state."""

from __future__ import annotations

import json
import math
import random

import pytest

from streams.demand.forecast import ForecastConfig, Forecaster
from touchpoint_tools.simulate.sampling import poisson

from .synth import HOUR_MS, T0, series, weekly_mean


def fed(points, config: ForecastConfig | None = None) -> Forecaster:
    f = Forecaster(config or ForecastConfig())
    for t, v in points:
        f.learn_one(t, v)
    return f


def ordered(p) -> bool:
    _, mean, lo80, hi80, lo95, hi95 = p
    return lo95 <= lo80 <= mean <= hi80 <= hi95


def test_forecast_follows_daily_and_weekly_season() -> None:
    pts = series(5, 1)
    f = fed(pts)
    out = f.forecast(168)
    assert [p[0] for p in out] == [pts[-1][0] + (h + 1) * HOUR_MS for h in range(168)]
    n = len(pts)
    err = [abs(p[1] - weekly_mean(n + h)) for h, p in enumerate(out)]
    # Poisson noise of a ~100/h series is ~10 per bucket: the mean forecast error is well below it.
    assert sum(err) / len(err) < 8.0
    # Weekend (Sat 14:00) is forecast lower than the weekday at the same hour (Fri 14:00).
    fri = next(p for h, p in enumerate(out) if (n + h) % 168 == 4 * 24 + 14)
    sat = next(p for h, p in enumerate(out) if (n + h) % 168 == 5 * 24 + 14)
    assert sat[1] < 0.8 * fri[1]
    assert all(ordered(p) for p in out)


def test_intervals_cover_what_they_promise() -> None:
    hits95 = hits80 = total = 0
    for seed in range(4):
        pts = series(8, 10 + seed)
        f = Forecaster()
        for i, (t, v) in enumerate(pts):
            if i >= 4 * 168 and i % 37 == 0 and i + 48 <= len(pts):
                for h, p in enumerate(f.forecast(48)):
                    y = pts[i + h][1]
                    hits95 += p[4] <= y <= p[5]
                    hits80 += p[2] <= y <= p[3]
                    total += 1
            f.learn_one(t, v)
    assert total > 1000
    assert 0.90 <= hits95 / total <= 0.99
    assert 0.72 <= hits80 / total <= 0.90


def test_sparse_counts_never_negative() -> None:
    rng = random.Random(3)
    pts = [(T0 + i * HOUR_MS, poisson(rng, 0.3 if i % 24 < 12 else 2.0)) for i in range(3 * 168)]
    f = fed(pts)
    out = f.forecast(168)
    assert all(p[4] >= 0 and p[2] >= 0 and p[1] >= 0 for p in out)
    assert all(ordered(p) for p in out)
    assert max(p[5] for p in out) > 2  # not collapsed onto zero


def test_negative_series_may_go_below_zero() -> None:
    pts = [(T0 + i * HOUR_MS, -50.0 + 10 * math.sin(i / 24 * 2 * math.pi)) for i in range(200)]
    out = fed(pts).forecast(24)
    assert min(p[1] for p in out) < -40


def test_snapshot_round_trip_is_exact_and_bounded() -> None:
    pts = series(3, 5)
    f = fed(pts[:300])
    g = Forecaster.from_snapshot(json.loads(json.dumps(f.snapshot())))
    for t, v in pts[300:]:
        f.learn_one(t, v)
        g.learn_one(t, v)
    assert f.forecast(48) == g.forecast(48)
    small = len(json.dumps(fed(series(2, 5)).snapshot()))
    big = len(json.dumps(fed(series(8, 5)).snapshot()))
    assert big < small * 1.2  # state does not grow with history


def test_snapshot_of_another_configuration_is_refused() -> None:
    snap = fed(series(1, 2)).snapshot()
    with pytest.raises(ValueError):
        Forecaster.from_snapshot(snap, ForecastConfig(step_s=1800))


def test_rebaseline_moves_to_the_new_level_at_once() -> None:
    pts = series(4, 7)
    f = fed(pts)
    before = f.forecast(24)
    f.set_shift(+1)
    n = len(pts)
    rng = random.Random(9)
    for i in range(n, n + 24):  # a day at 3x the usual level, inside an open alert
        f.learn_one(T0 + i * HOUR_MS, poisson(rng, 3 * weekly_mean(i)))
    assert f.shift == 1 and 2.5 < f.shift_ratio < 3.5
    held = f.forecast(24, hold_shift=True)
    plain = f.forecast(24)
    # While the shift is open the plain forecast still expects the usual level (the shift is
    # learned with a small weight); "if it holds" scales it by observed/expected.
    assert sum(p[1] for p in plain) < 1.6 * sum(p[1] for p in before)
    assert sum(p[1] for p in held) > 2.5 * sum(p[1] for p in before)
    f.rebaseline()
    assert f.shift == 0
    after = f.forecast(24)
    ratio = sum(p[1] for p in after) / sum(p[1] for p in before)
    assert 2.5 < ratio < 3.5


def test_hold_shift_without_shift_changes_nothing() -> None:
    f = fed(series(2, 4))
    assert f.forecast(12, hold_shift=True) == f.forecast(12)


def test_local_time_slots_follow_dst() -> None:
    # Peak at 09:00 New York wall-clock time, before and after the March DST change.
    start = 1_709_251_200_000  # 2024-03-01T00:00Z
    from datetime import datetime
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")

    def value(ts: int) -> float:
        return 100.0 if datetime.fromtimestamp(ts / 1000, tz=ny).hour == 9 else 10.0

    pts = [(start + i * HOUR_MS, value(start + i * HOUR_MS)) for i in range(16 * 24)]  # to 03-17
    out = fed(pts, ForecastConfig(tz="America/New_York")).forecast(48)
    peaks = [p for p in out if p[1] > 55]
    assert peaks and all(datetime.fromtimestamp(p[0] / 1000, tz=ny).hour == 9 for p in peaks)


def test_bad_input() -> None:
    f = Forecaster()
    with pytest.raises(ValueError):
        f.forecast(1)
    with pytest.raises(ValueError):
        f.learn_one(T0, math.nan)
    f.learn_one(T0, 1.0)
    with pytest.raises(ValueError):
        f.forecast(0)
    with pytest.raises(ValueError):
        f.forecast(169)
    with pytest.raises(ValueError):
        ForecastConfig(components=(("month", 0.5),))
