"""The detector's seasonal tiers do not learn an alert's buckets as the key's daily profile."""

import random

from streams.demand.detector import DemandDetector, DetectorConfig

from .synth import HOUR_MS, T0, poisson

CFG = DetectorConfig(bucket_s=3600)
BASE = 10.0


def _run(cfg: DetectorConfig, seed: int) -> tuple[DemandDetector, list[tuple[int, int, float | None]]]:
    """A key promoted from the pool (prior 10/h) surges x4 from 08:00 to 20:00 on its second
    day, then sells 10/h again: (detector, [(hour index, direction on open, expected)])."""
    rng = random.Random(seed)
    det = DemandDetector(cfg)
    log = []
    for i in range(4 * 24):
        mean = BASE * 4 if 24 + 8 <= i < 24 + 20 else BASE
        d = det.update(T0 + i * HOUR_MS, poisson(rng, mean), prior=BASE)
        log.append((i, d.direction if d.opened else 0, d.expected))
    return det, log


def test_a_surge_in_a_keys_first_days_is_not_learned_as_its_daily_profile() -> None:
    """The surge opened an alert (against the prior); its hours were still warming up the daily
    slots, which used to learn them at full weight (a running mean: 25 expected at 10:00 where the
    key sells 10), so demand back at 10 the next day opened a false collapse."""
    for seed in range(1, 6):
        det, log = _run(CFG, seed)
        assert any(d > 0 for i, d, _ in log if 24 + 8 <= i < 24 + 11), seed  # the surge opened
        collapses = [i for i, d, _ in log if d < 0 and i >= 24 + 20]
        assert collapses == [], (seed, collapses)
        expected_10h = [e for i, _, e in log if i in (2 * 24 + 10, 3 * 24 + 10)]
        assert all(e is not None and e < 1.5 * BASE for e in expected_10h), (seed, expected_10h)
        assert sum(det.day_mean[8:20]) / 12 < 1.3 * BASE, (seed, det.day_mean[8:20])


def test_the_old_running_mean_learned_the_surge() -> None:
    """``warmup_slot_weight=False`` restores the plain running mean: the same surge is learned
    (the difference the default makes)."""
    det, _ = _run(DetectorConfig(bucket_s=3600, warmup_slot_weight=False), 1)
    assert sum(det.day_mean[8:20]) / 12 > 1.6 * BASE
