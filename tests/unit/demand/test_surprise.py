"""Surprise calibration and the anomaly likelihood (pure functions)."""

from __future__ import annotations

import math
import random

import pytest

from streams.demand.surprise import CAL_EDGES, calibrated, learn_calibration, likelihood_step, log10_normal_tail, tail_surprise

LIK = dict(cap=10.0, alpha=0.2, window=8000, min_n=300, min_sd=0.1)


def test_normal_tail_is_stable_far_out() -> None:
    assert log10_normal_tail(0.0) == pytest.approx(math.log10(0.5))
    assert log10_normal_tail(3.0) == pytest.approx(math.log10(0.0013499), abs=1e-3)
    assert log10_normal_tail(40.0) < -340  # no underflow to -inf


def test_calibration_damps_routine_surprise_and_keeps_a_calibrated_key() -> None:
    tails: tuple[list[float], list[float]] = ([0.0] * len(CAL_EDGES), [0.0] * len(CAL_EDGES))
    n = 0.0
    rng = random.Random(1)
    for _ in range(3000):  # a well-calibrated key: P(S >= s) = 10^-s
        n = learn_calibration(tails, n, -math.log10(1.0 - rng.random()), 0.0, 2000)
    assert calibrated(2.0, tails[0], n, 20.0) == pytest.approx(2.0, abs=0.35)
    for _ in range(3000):  # now 5-surprises are routine (one bucket in ten)
        n = learn_calibration(tails, n, 5.0 if rng.random() < 0.1 else 0.0, 0.0, 2000)
    assert calibrated(5.0, tails[0], n, 20.0) < 1.5
    assert calibrated(60.0, tails[0], n, 20.0) > 20.0  # a shock beyond anything seen still counts


def _run(values: list[float], peak_block: int) -> list[float]:
    st = [0.0] * 6
    return [likelihood_step(st, s, peak_block=peak_block, **LIK) for s in values]


def test_likelihood_is_silent_before_min_n_and_speaks_on_a_new_burst() -> None:
    rng = random.Random(2)
    base = [-math.log10(1.0 - rng.random()) * 0.5 for _ in range(1000)]
    out = _run(base[:290] + [30.0] * 5, peak_block=0)
    assert max(out) == 0.0  # nothing before min_n buckets
    out = _run(base + [30.0] * 5, peak_block=0)
    assert max(out[:1000]) < 4.0 < max(out[1000:])


def test_a_recurring_burst_is_no_news_within_the_peak_blocks() -> None:
    """A burst every 6 hours (72 buckets of 5 min) keeps looking rare to a plain likelihood; with
    the peak of the last one to two 12-hour blocks it is news only when it beats the last ones
    (measured: 22 -> 3 buckets at likelihood >= 4 over the last three days)."""
    rng = random.Random(3)
    values = [8.0 if i % 72 == 10 else -math.log10(1.0 - rng.random()) * 0.5 for i in range(288 * 6)]
    plain = _run(values, peak_block=0)
    blocks = _run(values, peak_block=144)
    late = range(288 * 3, len(values))
    assert sum(1 for i in late if plain[i] >= 4.0) >= 15
    assert sum(1 for i in late if blocks[i] >= 4.0) <= 4
    values[288 * 5 + 40] = values[288 * 5 + 41] = 10.0  # a larger burst than the routine one is news again
    assert max(_run(values, peak_block=144)[288 * 5 + 40:288 * 5 + 43]) >= 4.0


def test_laplace_tail_for_non_counts_grows_linearly_with_the_deviation() -> None:
    # sd 1.25 = mean absolute deviation 1: P(X >= mu + d) = exp(-d) / 2, either side.
    up, dn = tail_surprise(15.0, 10.0, 1.25**2, integral=False, laplace=True)
    assert dn == 0.0 and up == pytest.approx(-math.log10(0.5 * math.exp(-5.0)))
    up, dn = tail_surprise(5.0, 10.0, 1.25**2, integral=False, laplace=True)
    assert up == 0.0 and dn == pytest.approx(-math.log10(0.5 * math.exp(-5.0)))
    # Far out it is much less surprised than the normal tail (heavy-tailed metrics)...
    assert tail_surprise(20.0, 10.0, 1.25**2, False, laplace=True)[0] < tail_surprise(20.0, 10.0, 1.25**2, False)[0] / 3
    # ...and counts keep their exact tails.
    assert tail_surprise(9.0, 3.0, 3.0, True, laplace=True) == tail_surprise(9.0, 3.0, 3.0, True)
