"""Daily novelty: per time-of-day slot peaks of the last days (pure)."""

from __future__ import annotations

import json

import pytest

from streams.demand.novelty import DailyPeaks, local_day

DAY_MS = 86_400_000


def test_local_day_follows_the_local_wall_clock() -> None:
    # 2014-02-23 23:30 UTC is already the 24th in Berlin (UTC+1).
    ts = 1393198200000
    assert local_day(ts, "Europe/Berlin") == local_day(ts, "UTC") + 1
    assert local_day(ts + DAY_MS, "UTC") == local_day(ts, "UTC") + 1


def test_a_burst_on_each_of_the_last_two_days_is_routine_a_one_off_repeat_is_not() -> None:
    p = DailyPeaks(48, days=2, spread=1)
    day = 1000
    assert not p.routine(0, 6, day, 2.0)  # nothing remembered: news
    p.learn(6, day, (2.0, 0.0))
    # One day later: it happened only once before, so it is still news (the same jam twice).
    assert not p.routine(0, 6, day + 1, 2.0)
    p.learn(6, day + 1, (2.0, 0.0))
    # The third night running, at the same time or one slot off: routine.
    assert p.routine(0, 6, day + 2, 2.0)
    assert p.routine(0, 7, day + 2, 1.5)
    # Not in the other direction, not far from that time, not when clearly larger.
    assert not p.routine(1, 6, day + 2, 2.0)
    assert not p.routine(0, 9, day + 2, 2.0)
    assert not p.routine(0, 6, day + 2, 2.5)


def test_margin_spread_and_forgetting() -> None:
    p = DailyPeaks(48, days=2, spread=2, margin=1.5)
    for d in (10, 11):
        p.learn(47, d, (2.0, 0.0))  # the slot before midnight, wrapping onto slot 1 with spread 2
    assert p.routine(0, 1, 12, 2.9)  # within 1.5 x, two slots away across midnight
    assert not p.routine(0, 1, 12, 3.1)
    # A missed day breaks the pattern: the peaks of two and three days ago do not both count.
    assert not p.routine(0, 47, 14, 1.0)


def test_snapshot_roundtrip_and_slot_check() -> None:
    p = DailyPeaks(24)
    p.learn(3, 5, (1.25, 0.5))
    q = DailyPeaks(24)
    q.restore(json.loads(json.dumps(p.snapshot())))
    assert q.snapshot() == p.snapshot()
    with pytest.raises(ValueError):
        DailyPeaks(48).restore(p.snapshot())
    with pytest.raises(ValueError):
        DailyPeaks(48, days=3)
