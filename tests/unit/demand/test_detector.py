"""Detector on seeded synthetic weekly-seasonal series."""

import json
import random
from typing import Any

import pytest

from streams.demand.detector import DemandDetector, DetectorConfig, tail_surprise

from .synth import HOUR_MS, T0, poisson, series, weekly_mean

CFG = DetectorConfig(bucket_s=3600)
SURGE = 5 * 168 + 40  # Saturday 16:00 of week 5, x5 for 6 buckets
COLLAPSE = 6 * 168 + 100  # Friday 04:00 of week 6, -70% for 12 buckets


def injected(seed: int) -> list[tuple[int, int]]:
    out = []
    for i, (t, c) in enumerate(series(8, seed)):
        if SURGE <= i < SURGE + 6:
            c *= 5
        elif COLLAPSE <= i < COLLAPSE + 12:
            c = int(c * 0.3)
        out.append((t, c))
    return out


def opens(points: list[tuple[int, int]], cfg: DetectorConfig = CFG) -> list[tuple[int, int]]:
    det = DemandDetector(cfg)
    return [(i, d.direction) for i, (t, c) in enumerate(points) if (d := det.update(t, c)).opened]


def test_pinned_alerts_on_seed_1() -> None:
    after_week_one = [(i, d) for i, d in opens(injected(1)) if i >= 168]
    # Re-pinned after the calibration / AR(1) / weekly-fit changes: the week-1
    # false alert (301) is gone; the collapse opens at 1109 (5 buckets in).
    # Re-pinned again for the negative-binomial count model (Poisson noise no
    # longer counted twice): the week-5 false surge 911 (42 against a true mean
    # of 22.7) is gone, and 294 is new: the first Saturday 06:00 at 0.6x of a
    # weekday, judged by the daily tier alone because the weekly tier is not
    # ready before two weeks (the old, inflated relative deviation hid it).
    # Re-pinned for the issue-15 defaults: 294 (a cold-start false collapse) is
    # gone because the surprise calibration now learns from every bucket
    # (calib_learn="all"; with "outside" it is back, nothing else differs).
    assert after_week_one == [(880, 1), (1109, -1)]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_surge_and_collapse_detected_quickly_without_false_alerts(seed: int) -> None:
    alerts = opens(injected(seed))
    surge = [i for i, d in alerts if d > 0 and SURGE <= i < SURGE + 6]
    collapse = [i for i, d in alerts if d < 0 and COLLAPSE <= i < COLLAPSE + 12]
    assert surge and surge[0] - SURGE <= 2
    assert collapse and collapse[0] - COLLAPSE <= 8
    # Normal weeks (after the first, cold-start week): at most one false alert per week.
    false = [i for i, _ in alerts if i >= 168 and not (SURGE <= i < SURGE + 24 or COLLAPSE <= i < COLLAPSE + 24)]
    for week in range(1, 8):
        assert sum(1 for i in false if i // 168 == week) <= 1


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_sparse_poisson_counts_do_not_alarm_at_the_floor(seed: int) -> None:
    rng = random.Random(seed)
    points = [(T0 + i * HOUR_MS, poisson(rng, weekly_mean(i, scale=1.0))) for i in range(6 * 168)]
    assert max(c for _, c in points) <= 8
    assert [i for i, _ in opens(points) if i >= 24] == []


def test_sparse_sustained_collapse_is_still_seen() -> None:
    rng = random.Random(7)
    points = [(T0 + i * HOUR_MS, poisson(rng, 4.0)) for i in range(4 * 168)]
    points += [(T0 + (4 * 168 + i) * HOUR_MS, 0) for i in range(24)]
    found = [i for i, d in opens(points) if d < 0 and i >= 4 * 168]
    assert found and found[0] - 4 * 168 <= 12


def test_cold_start_uses_prior() -> None:
    det = DemandDetector(CFG)
    d = det.update(T0, 50, prior=10.0)
    assert d.tier == "prior" and d.expected == pytest.approx(10.0)
    assert DemandDetector(CFG).update(T0, 50).expected is None


def test_count_aware_tails() -> None:
    up, down = tail_surprise(0, 0.5, 0.5, integral=True)
    assert up == 0.0 and down == pytest.approx(-0.4343 * -0.5, abs=1e-3)  # P(0)=e^-0.5
    up, _ = tail_surprise(3, 1.0, 1.0, integral=True)
    assert up == pytest.approx(1.0953, abs=1e-3)  # P(X>=3 | 1) = 0.0803
    up, _ = tail_surprise(130.0, 100.0, 100.0, integral=False)
    assert up == pytest.approx(2.8697, abs=1e-3)  # normal 3-sigma tail


def test_snapshot_roundtrip_gives_identical_decisions() -> None:
    points = injected(2)
    det = DemandDetector(CFG)
    for t, c in points[:900]:
        det.update(t, c)
    blob = json.dumps(det.snapshot())
    clone = DemandDetector.from_snapshot(json.loads(blob), CFG)
    assert clone.snapshot() == det.snapshot()
    for t, c in points[900:]:
        assert det.update(t, c) == clone.update(t, c)
    assert len(blob) < 20_000  # fixed size per key


def test_causal_decisions_do_not_depend_on_future() -> None:
    points = injected(3)
    full = DemandDetector(CFG)
    a = [full.update(t, c) for t, c in points]
    part = DemandDetector(CFG)
    b = [part.update(t, c) for t, c in points[:1000]]
    assert a[:1000] == b


def test_routine_spikes_are_calibrated_away() -> None:
    """Heavy-tailed noise: a key whose big surprises are routine stops alerting on them."""
    rng = random.Random(5)
    cfg = DetectorConfig(bucket_s=3600, warmup_s=0)  # compare with the first days' alerts too
    det = DemandDetector(cfg)
    opened = []
    for i in range(8 * 168):
        c = poisson(rng, 100.0) * (8 if rng.random() < 0.03 else 1)
        if det.update(T0 + i * HOUR_MS, c).opened:
            opened.append(i)
    early = [i for i in opened if i < 2 * 168]
    late = [i for i in opened if i >= 6 * 168]
    assert len(late) < max(1, len(early))
    assert det.update(T0 + 8 * 168 * HOUR_MS, 2000).opened  # a new, larger shock still alerts


def test_empty_slots_do_not_make_one_event_certain() -> None:
    det = DemandDetector(CFG)
    for i in range(3 * 168):
        det.update(T0 + i * HOUR_MS, 0)
    d = det.update(T0 + 3 * 168 * HOUR_MS, 1)
    assert d.expected is not None and d.expected > 0.2 and d.surprise_up < 1.0


def test_autocorrelated_runs_need_more_evidence() -> None:
    det = DemandDetector(CFG)
    assert det._run_var_factor(10) == 1.0
    det.ac = [0.0, 0.5, 1.0]  # lag-1 correlation 0.5
    assert 2.0 < det._run_var_factor(10) < 3.0


def _sparse_surge(seed: int, mult: float = 4.0) -> tuple[list[int], int]:
    """A 2-6/h weekly-seasonal key for four weeks, then x``mult`` for 8 hours."""
    import math

    rng = random.Random(seed)
    start = 4 * 168 + 10 + seed % 10
    det = DemandDetector(CFG)
    opened = []
    for i in range(4 * 168 + 40):
        h, day = i % 24, (i // 24) % 7
        lam = (2 + 4 * (0.5 + 0.5 * math.sin((h - 9) / 24 * 2 * math.pi))) * (0.8 if day >= 5 else 1.0)
        if start <= i < start + 8:
            lam *= mult
        if det.update(T0 + i * HOUR_MS, poisson(rng, lam)).opened:
            opened.append(i)
    return opened, start


@pytest.mark.parametrize("seed", range(8))
def test_sparse_x4_surge_alerts_within_a_few_buckets(seed: int) -> None:
    """Counts are judged as counts (Poisson noise once, plus learned overdispersion): a x4 surge
    of a 2-6/h key is a clear shift, and the normal weeks stay quiet."""
    opened, start = _sparse_surge(seed)
    hit = [i for i in opened if start <= i < start + 8]
    # Seeds 0-19: opens 0-5 buckets in (median 1); the old model missed 5 of 20 within 8.
    assert hit and hit[0] - start <= 5, (opened, start)
    assert [i for i in opened if 168 <= i < start] == []


def test_an_alert_does_not_teach_the_noise_model() -> None:
    """A day-long collapse leaves the deviation, overdispersion and residual autocorrelation as
    they were when it opened: after NEW_NORMAL a rebound is judged with the pre-alert noise, not
    with a deviation doubled by the collapse."""
    from streams.demand.lifecycle import DemandMonitor, LifecycleConfig

    rng = random.Random(9)
    mon = DemandMonitor("k", "", CFG, LifecycleConfig(new_normal_buckets=24))
    det = mon.detector
    start = 3 * 168 + 10

    def noise() -> tuple[Any, ...]:
        return dict(det.rdev), {k: det._overdispersion(k) for k in det.od}, det._rho()

    states, at_open = [], None
    for i in range(start + 40):
        _, recs = mon.update(T0 + i * HOUR_MS, poisson(rng, 100.0 * (0.3 if i >= start else 1.0)))
        states += [(i, r.state) for r in recs]
        if any(r.state == "OPEN" for r in recs) and i >= start:
            at_open = noise()
        if any(r.state == "NEW_NORMAL" for r in recs):
            break
    late = [(i, st) for i, st in states if i >= start]
    assert late[0][1] == "OPEN" and late[0][0] - start <= 3 and late[-1][1] == "NEW_NORMAL", late
    assert noise() == at_open
    # A rebound to the old level on the re-learned baseline opens at once.
    d, _ = mon.update(T0 + (start + 40) * HOUR_MS, 100)
    assert d.surprise_up > 5.0


def test_snapshots_of_the_previous_version_still_load() -> None:
    """No overdispersion sums, runs of 4 floats: the detector restores and goes on deciding."""
    points = injected(2)
    det = DemandDetector(CFG)
    for t, c in points[:900]:
        det.update(t, c)
    old = json.loads(json.dumps(det.snapshot()))
    del old["od"]
    old["run"] = [r[:4] for r in old["run"]]
    clone = DemandDetector.from_snapshot(old, CFG)
    assert all(clone._overdispersion(t) == pytest.approx((1.25 * det.rdev[t]) ** 2) for t in det.od)
    decisions = [clone.update(t, c) for t, c in points[900:]]
    assert any(d.opened and d.direction < 0 for d in decisions)  # the week-6 collapse


def _machine_series(n: int, seed: int) -> list[tuple[int, float]]:
    """A non-count, non-seasonal series (a temperature around 70 with slow wander), 5-min buckets."""
    rng = random.Random(seed)
    out, level = [], 70.0
    for i in range(n):
        level += rng.gauss(0.0, 0.3) - 0.01 * (level - 70.0)
        out.append((T0 + i * 300_000, round(level + rng.gauss(0.0, 0.1), 3)))
    return out


def test_non_count_series_uses_the_level_and_the_likelihood() -> None:
    """Without seasonality the level fits better than week-old slots and speaks; the evidence is
    the anomaly likelihood, which opens on a sustained +8 degree step. Random-walk excursions do
    open now and then: seeds 1-8 gave 0-6 false opens in three weeks (26 in all; 18 with the
    previous level_alpha 0.05, which missed the step on 2 of 8 seeds)."""
    cfg = DetectorConfig(bucket_s=300)
    false_opens = 0
    for seed in range(1, 9):
        det = DemandDetector(cfg)
        points = _machine_series(4 * 2016, seed)
        step = 4 * 2016 - 200
        opened, tiers = [], []
        for i, (t, v) in enumerate(points):
            d = det.update(t, v + (8.0 if i >= step else 0.0))
            tiers.append(d.tier)
            if d.opened:
                opened.append((i, d.direction))
        assert not det.integral
        assert tiers[2016:step].count("level") > 0.5 * (step - 2016)
        false_opens += len([o for o in opened if 2016 <= o[0] < step])
        hit = [i for i, direction in opened if i >= step and direction > 0]
        assert hit and hit[0] - step <= 3, (seed, opened)
    assert false_opens <= 8 * 3 * 1.5  # at most 1.5 per key-week


def test_snapshot_roundtrip_of_a_non_count_key() -> None:
    cfg = DetectorConfig(bucket_s=300)
    points = _machine_series(3000, 5)
    det = DemandDetector(cfg)
    for t, v in points[:2500]:
        det.update(t, v)
    clone = DemandDetector.from_snapshot(json.loads(json.dumps(det.snapshot())), cfg)
    assert clone.snapshot() == det.snapshot() and clone.lik == det.lik
    assert "daily" in det.snapshot()  # a non-count key carries the daily novelty's peaks
    for t, v in points[2500:]:
        assert det.update(t, v) == clone.update(t, v)


def test_volume_floor_applies_to_counts_only() -> None:
    """CPU % around 0.13 cannot move by 5 units; a count key that moves by 4 events is no shift
    a planner acts on."""
    cfg = DetectorConfig(bucket_s=300)
    det = DemandDetector(cfg)
    rng = random.Random(6)
    for i in range(1500):
        det.update(T0 + i * 300_000, round(0.13 + rng.gauss(0.0, 0.002), 4))
    ds = [det.update(T0 + (1500 + j) * 300_000, 0.6) for j in range(6)]
    assert any(d.opened and d.direction > 0 for d in ds)
    count = DemandDetector(cfg)
    for i in range(1500):
        count.update(T0 + i * 300_000, 0)
    assert not any(count.update(T0 + (1500 + j) * 300_000, 1 if j % 2 else 0).opened for j in range(8))


def test_no_alert_in_the_first_two_days_without_a_prior() -> None:
    """Before the daily tier exists the level alone cannot tell a daily pattern from a shift: a key
    without a prior opens nothing in its first two days (a daily square wave 20 -> 80 opened 4
    alerts there); with a prior (a key promoted from the pool) it can open at once."""
    det = DemandDetector(DetectorConfig(bucket_s=300))
    opened = []
    for i in range(4 * 288):
        hour = (i % 288) / 12
        d = det.update(T0 + i * 300_000, 80 if 9 <= hour < 18 else 20)
        if d.opened:
            opened.append(i)
    assert [i for i in opened if i < 2 * 288] == []
    assert DemandDetector(DetectorConfig(bucket_s=300)).update(T0, 50, prior=5.0).tier == "prior"
    primed = DemandDetector(DetectorConfig(bucket_s=300))
    assert any(primed.update(T0 + i * 300_000, 60, prior=5.0).opened for i in range(6))


def test_an_alert_opens_on_a_bucket_that_moved_its_way() -> None:
    """A sparse 0/20 spike series: the run-sum test once opened a surge on the 0 after a 20
    (art_increase_spike_density: 28 false rows). Every OPEN now sits on a bucket whose own
    excess has the alert's sign."""
    rng = random.Random(8)
    det = DemandDetector(DetectorConfig(bucket_s=300))
    for i in range(4032):
        d = det.update(T0 + i * 300_000, 20 if rng.random() < 0.02 else 0)
        if d.opened:
            assert d.expected is not None and (d.observed - d.expected) * d.direction > 0, (i, d)


def _nightly_spikes(days: int, one_off: int | None = None) -> list[tuple[int, float]]:
    """CPU % near 0.13 every 5 min, a one-bucket spike to ~1.5 at 03:15 (+-10 min) every night
    (ec2_cpu_utilization_24ae8d's pattern), and optionally a 20-minute burst at 14:00 on day ``one_off``."""
    rng = random.Random(7)
    out = []
    for i in range(days * 288):
        day, slot = divmod(i, 288)
        v = 0.13 + abs(rng.gauss(0.0, 0.02))
        if slot == 39 + (day % 5) - 2 or (day == one_off and 168 <= slot < 172):
            v = 1.4 + 0.2 * rng.random()
        out.append((T0 + i * 300_000, v))
    return out


def test_a_spike_at_the_same_time_every_night_is_routine_from_the_third_night() -> None:
    """Daily novelty: without it the nightly spike opened an alert on 6 of nights 5-11 (its 12-24 h
    peak memory forgets it by the next night); with it, none, while a one-off burst at 14:00 still
    opens (it is larger than the night's spike, which the 12-24 h peak rule remembers)."""
    points = _nightly_spikes(12, one_off=10)

    def night_opens(cfg: DetectorConfig) -> tuple[list[int], bool]:
        det = DemandDetector(cfg)
        out = [i // 288 for i, (t, v) in enumerate(points) if det.update(t, v).opened and i % 288 < 60]
        again = DemandDetector(cfg)
        one_off = [i for i, (t, v) in enumerate(points) if again.update(t, v).opened and 0 <= i - (10 * 288 + 168) < 4]
        return [d for d in out if d >= 5], bool(one_off)

    old, _ = night_opens(DetectorConfig(bucket_s=300, daily_novelty_days=0))
    new, one_off_seen = night_opens(DetectorConfig(bucket_s=300))
    assert len(old) >= 4, old
    assert new == [], new
    assert one_off_seen
