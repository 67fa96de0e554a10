"""Alert lifecycle transitions and monitor snapshots."""

import json

import pytest

from streams.demand.detector import Decision, DetectorConfig
from streams.demand.lifecycle import (
    ESCALATE,
    NEW_NORMAL,
    OPEN,
    RESOLVED,
    AlertLifecycle,
    DemandMonitor,
    LifecycleConfig,
)

from .synth import T0, series

CFG = DetectorConfig(bucket_s=3600)
START = 5 * 168 + 40


def run(points, lc: LifecycleConfig | None = None):
    mon = DemandMonitor("sku-1", "sku", CFG, lc)
    out = []
    for i, (t, c) in enumerate(points):
        _, recs = mon.update(t, c)
        out += [(i, r) for r in recs]
    return mon, out


def test_open_escalate_resolve() -> None:
    points = series(7, 4)
    for i in range(START, START + 8):
        t, c = points[i]
        points[i] = (t, c * (2 if i < START + 2 else 6))
    _, recs = run(points)
    states = [(r.state, r.direction, r.severity) for i, r in recs if i >= START]
    # Severity comes from observed/expected summed over the alert, so it grows
    # as the x6 buckets arrive: OPEN, ESCALATE(s) up to 3, then RESOLVED.
    assert states[0][:2] == (OPEN, "surge")
    esc = [s for s in states[1:] if s[0] == ESCALATE]
    assert esc and [s[2] for s in esc] == sorted(s[2] for s in esc) and esc[-1][2] == 3
    assert states[len(esc) + 1] == (RESOLVED, "surge", 3)
    first = [r for i, r in recs if i >= START][0]
    assert first.bucket_start == first.opened_at and first.bucket_start.endswith("Z")
    assert first.observed > first.expected and first.excess > 0
    assert {r.alert_id for i, r in recs if i >= START}.__len__() >= 1
    assert set(first.to_dict()) >= {"alert_id", "key", "dimension", "state", "direction", "severity",
                                    "observed", "expected", "excess", "bucket_start", "opened_at"}


def test_open_then_new_normal_rebaselines() -> None:
    points = series(8, 5)
    shifted = [(t, c * 3 if i >= START else c) for i, (t, c) in enumerate(points)]
    mon, recs = run(shifted, LifecycleConfig(new_normal_buckets=24))
    after = [(i, r.state) for i, r in recs if i >= START]
    assert after[0][1] == OPEN
    assert NEW_NORMAL in [s for _, s in after]
    nn = next(i for i, s in after if s == NEW_NORMAL)
    # Re-baselined at the new level: it does not keep alerting for the rest of the run.
    assert len([s for i, s in after if i > nn + 24 and s == OPEN]) <= 1
    assert mon.detector.week_mean[40] > 2 * max(1.0, min(mon.detector.week_mean))


def test_monitor_snapshot_roundtrip() -> None:
    points = series(7, 6)
    points = [(t, c * 4 if 900 <= i < 910 else c) for i, (t, c) in enumerate(points)]
    mon = DemandMonitor("k", "sku", CFG)
    for t, c in points[:905]:
        mon.update(t, c)
    clone = DemandMonitor.from_snapshot(json.loads(json.dumps(mon.snapshot())), "k", "sku", CFG)
    for t, c in points[905:]:
        assert mon.update(t, c) == clone.update(t, c)


def _decision(i: int, severity: int, opened: bool = False, resolved: bool = False) -> Decision:
    return Decision(
        ts_ms=T0 + i * 3_600_000, observed=200.0, expected=100.0, sd=10.0, surprise_up=5.0,
        surprise_down=0.0, evidence_up=6.0, evidence_down=0.0, direction=0 if resolved else 1,
        opened=opened, resolved=resolved, severity=0 if resolved else severity,
        buckets_in_alert=0 if resolved else i + 1, tier="week",
    )


def _states(severities: list[int], lc: LifecycleConfig | None = None) -> list[tuple[int, str, int]]:
    life = AlertLifecycle("k", "sku", lc)
    out = []
    for i, sev in enumerate(severities):
        d = _decision(i, sev, opened=i == 0, resolved=sev == 0)
        out += [(i, r.state, r.severity) for r in life.observe(d)]
    return out


def test_severity_rise_right_after_open_does_not_page_again() -> None:
    # OPEN at 1, the next bucket already says 2 (the estimate settling): no ESCALATE,
    # but the alert holds severity 2, so only a rise above 2 escalates later.
    assert _states([1, 2, 2, 3, 3, 0]) == [(0, OPEN, 1), (3, ESCALATE, 3), (5, RESOLVED, 3)]
    assert _states([1, 2, 2, 2, 0]) == [(0, OPEN, 1), (4, RESOLVED, 2)]
    # settle_buckets=1 is the old rule: every rise escalates.
    assert _states([1, 2, 2, 3, 0], LifecycleConfig(settle_buckets=1)) == [
        (0, OPEN, 1), (1, ESCALATE, 2), (3, ESCALATE, 3), (4, RESOLVED, 3)]
    # A longer settling period absorbs every rise inside it.
    assert _states([1, 2, 3, 3, 4, 0], LifecycleConfig(settle_buckets=3)) == [
        (0, OPEN, 1), (4, ESCALATE, 4), (5, RESOLVED, 4)]


def test_settle_buckets_validated() -> None:
    with pytest.raises(ValueError):
        LifecycleConfig(settle_buckets=0)
