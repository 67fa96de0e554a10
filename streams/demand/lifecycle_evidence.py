"""What the alert lifecycle weighs, apart from its state machine (streams/demand/lifecycle.py):
the severity of a level, the predictive variance and likelihood ratio of a bucket, the lead-in
streak of surprising buckets before an OPEN (counted by the volume rule), and the memory of the
last silent shift (an alert dropped unpublished). Pure functions over the lifecycle's JSON-safe
lists, so its snapshot format is theirs."""

from __future__ import annotations

import math

from .detector import Decision

#: The detector's tails are normal from this expected count on (``surprise.tail_surprise``): there
#: the halving test's Gaussian likelihood ratio holds; sparser buckets weigh the exact count ratio.
NORMAL_FROM = 50.0

__all__ = ["halving_evidence", "count_llr", "severity", "variance", "llr", "track_lead", "remember_silent", "remember_rise", "judge_against_echo"]


def severity(ratio: float, direction: int) -> int:
    """1-4 from observed/expected over the alert (>= 2x, 4x, 10x in the alert's direction).

    >>> severity(4.5, 1), severity(0.4, -1), severity(1.2, 1)
    (3, 2, 1)
    """
    r = ratio if direction > 0 else 1.0 / max(ratio, 1e-6)
    return 4 if r >= 10.0 else 3 if r >= 4.0 else 2 if r >= 2.0 else 1


def variance(d: Decision, e: float, integral: bool) -> float:
    """Predictive variance of a bucket whose baseline is ``e``, with the detector's noise model
    (negative binomial for counts, relative spread otherwise)."""
    mu, sd = d.expected, d.sd
    if mu is None or sd is None or mu <= 0.0:
        return max(e, 1.0) if integral else max(e * e * 0.01, 1e-9)
    if integral:
        a = max(0.0, (sd * sd - mu) / (mu * mu))
        return max(e + a * e * e, 0.25)
    return max((sd / mu * e) ** 2, 1e-9)


def llr(x: float, e: float, ratio: float, var0: float) -> float:
    """log p(x | level ratio*e) - log p(x | level e), Gaussian with variance var0 at the baseline
    and ratio*var0 at the shifted level (Poisson-like), clipped to +-20 per bucket."""
    m1, v1 = ratio * e, max(var0 * ratio, 1e-9)
    out = -0.5 * math.log(v1 / var0) - (x - m1) ** 2 / (2 * v1) + (x - e) ** 2 / (2 * var0)
    return max(-20.0, min(20.0, out))


def halving_evidence(cusum: float, x: float, e: float, var0: float, ratio: float, cap: float,
                     capped: bool = False) -> float:
    """Page's CUSUM step of the evidence (natural log) that a bucket of count ``x`` is at
    ``ratio`` (0.5: half) of its baseline ``e`` rather than at it: ``max(0, cusum + llr)``, with
    the detector's predictive variance ``var0`` at the baseline. From :data:`NORMAL_FROM` on the
    ratio is Gaussian (:func:`llr`); a sparser bucket weighs the exact negative-binomial ratio
    (:func:`count_llr`), at most ``cap``: one empty hour of a sparse key is not a collapse.
    ``capped``: every bucket at most ``cap`` (a key's first weeks).

    >>> round(halving_evidence(0.0, 500.0, 1000.0, 170.0 ** 2, 0.5, 1.8), 2)  # -50 % on a key scattering 17 %
    4.67
    >>> halving_evidence(0.0, 1000.0, 1000.0, 170.0 ** 2, 0.5, 1.8)  # at the baseline: no evidence
    0.0
    >>> round(halving_evidence(0.0, 2.0, 7.0, 7.0, 0.5, 9.0), 2)  # 2 orders where 7 were expected
    2.11
    >>> halving_evidence(3.0, 0.0, 20.0, 25.0, 0.5, 1.8)  # an empty hour weighs a quarter at most
    4.8
    >>> halving_evidence(0.0, 0.0, 1000.0, 170.0 ** 2, 0.5, 1.8, capped=True)
    1.8
    """
    if e < NORMAL_FROM:
        return max(0.0, cusum + min(count_llr(x, e, ratio, var0), cap))
    step = llr(x, e, ratio, var0)
    return max(0.0, cusum + (min(step, cap) if capped else step))


def count_llr(x: float, e: float, ratio: float, var0: float) -> float:
    """log p(x | mean ratio*e) - log p(x | mean e) for a count ``x``, negative binomial with the
    dispersion ``var0 = e + a e^2`` gives at the baseline (Poisson when ``a`` is 0).

    >>> round(count_llr(2.0, 7.0, 0.5, 7.0), 3)  # Poisson: 2 ln 0.5 + 3.5
    2.114
    >>> count_llr(0.0, 7.0, 0.5, 7.0 + 0.5 * 49.0) < count_llr(0.0, 7.0, 0.5, 7.0)  # overdispersed: weaker
    True
    """
    m0, m1 = max(e, 1e-9), max(ratio * e, 1e-9)
    a = max(0.0, (var0 - m0) / (m0 * m0))
    if a < 1e-9:
        return x * math.log(m1 / m0) - (m1 - m0)
    k = 1.0 / a
    return x * math.log(m1 / m0) + (x + k) * math.log((k + m0) / (k + m1))


def track_lead(lead: list[list[float]], d: Decision, integral: bool, limit: float, active: bool) -> list[list[float]]:
    """Extend (or restart) each direction's lead-in streak (``lead[0]`` up, ``lead[1]`` down:
    observed, expected, largest excess, variance, buckets) with this bucket, in place; returns the
    streaks as they were before it. A bucket at least ``limit`` surprising that moved in a
    direction extends that direction's streak; any other bucket (or an open alert) ends it."""
    before = [list(v) for v in lead]
    for i, (sign, s) in enumerate(((1, d.surprise_up), (-1, d.surprise_down))):
        streak = lead[i]
        if limit <= 0.0 or active or d.expected is None or s < limit or (d.observed - d.expected) * sign <= 0:
            streak[:] = [0.0] * 5
            continue
        e = max(d.expected, 0.0)
        streak[0] += d.observed
        streak[1] += e
        streak[2] = max(streak[2], (d.observed - e) * sign)
        streak[3] += variance(d, e, integral)
        streak[4] += 1.0
    return before


def remember_silent(echo: list[float], direction: int, ref: list[float] | None, buckets: int,
                    new_normal_buckets: int) -> list[float]:
    """The memory after an alert of ``direction`` was dropped unpublished after ``buckets``: the
    level it rose (or fell) from (the mean of its frozen baseline ``ref``), for the rest of the
    time it would have needed to become a new normal: ``[direction, buckets left, level]``.
    The detector may have learned the silent shift meanwhile; :func:`judge_against_echo` keeps
    the return to that level from becoming an alert the other way.

    >>> remember_silent([], 1, [10.0, 30.0], 24, 72)
    [1.0, 48.0, 20.0]
    >>> remember_silent([1.0, 40.0, 20.0], 1, [50.0], 24, 72)  # the same shift again: the level before it
    [1.0, 40.0, 20.0]
    """
    if not ref:
        return echo
    level = sum(ref) / len(ref)
    if echo and echo[0] == direction:
        pick = min if direction > 0 else max
        return [echo[0], echo[1], pick(echo[2], level)]
    return [float(direction), float(new_normal_buckets - buckets), level]


def remember_rise(echo: list[float], level: float, buckets: int) -> list[float]:
    """The memory of a key promoted from the long tail: it rose from ``level`` (its pooled level
    before the rise), remembered for ``buckets`` (the time a shift needs to become a new normal),
    in the same form as a silent surge's (:func:`remember_silent`), so :func:`judge_against_echo`
    judges a collapse opening meanwhile against that level: demand falling back to where it came
    from is no collapse. An older memory of a rise keeps the lower level and the longer time.

    >>> remember_rise([], 0.5, 72)
    [1.0, 72.0, 0.5]
    >>> remember_rise([1.0, 30.0, 0.3], 0.5, 72)
    [1.0, 72.0, 0.3]
    >>> remember_rise([-1.0, 30.0, 4.0], 0.5, 72)  # a silent collapse is forgotten: the key rose since
    [1.0, 72.0, 0.5]
    """
    if level <= 0.0:
        return echo
    if echo and echo[0] > 0:
        return [1.0, max(echo[1], float(buckets)), min(echo[2], level)]
    return [1.0, float(buckets), level]


def judge_against_echo(echo: list[float], direction: int, ref: list[float]) -> tuple[list[float], list[float]]:
    """(baseline, memory) for an alert of ``direction`` opening against frozen baseline ``ref``:
    against the direction of the last silent shift, within its memory, the baseline is scaled to
    the level before that shift when that lies further in this alert's direction (demand back
    where it was is no shift); the memory is spent by an alert the other way.

    >>> judge_against_echo([1.0, 10.0, 10.0], -1, [40.0, 40.0])  # a collapse after a silent surge
    ([10.0, 10.0], [])
    >>> judge_against_echo([1.0, 10.0, 10.0], -1, [8.0])  # already below the old level: as is
    ([8.0], [])
    """
    memory = [] if echo and echo[0] != direction else echo
    if not echo or echo[0] == direction or not ref:
        return ref, memory
    now = sum(ref) / len(ref)
    if now <= 0.0 or echo[2] <= 0.0:
        return ref, memory
    scale = echo[2] / now
    if (scale - 1.0) * direction <= 0.0:
        return ref, memory
    return [v * scale for v in ref], memory
