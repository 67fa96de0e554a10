"""Surprise: tail probabilities of a bucket, their calibration, and the anomaly likelihood.

Surprise is ``-log10`` of a tail probability (1 = a 1-in-10 bucket, 3 = 1 in
1000). :func:`tail_surprise` gives it under the detector's predictive
distribution (exact Poisson / negative binomial for small counts, normal
otherwise); :func:`calibrated` re-expresses it through a key's own history of
surprises; :func:`likelihood_step` is the Numenta-HTM-style anomaly likelihood
of the short-term mean surprise. Pure functions over small fixed-size lists.
"""

from __future__ import annotations

import math

__all__ = [
    "CAL_EDGES",
    "log10_normal_tail",
    "tail_surprise",
    "calibrated",
    "learn_calibration",
    "likelihood_step",
]

_LOG10 = math.log(10.0)
#: Surprise levels at which the empirical tail frequency is tracked (calibration).
CAL_EDGES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0,
             60.0, 120.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0)


def log10_normal_tail(z: float) -> float:
    """log10 P(Z >= z) for a standard normal, stable for large z."""
    if z < 5.0:
        p = 0.5 * math.erfc(z / math.sqrt(2.0))
        return math.log10(max(p, 1e-300))
    # Mills-ratio asymptotic expansion.
    ln = -0.5 * z * z - math.log(z * math.sqrt(2.0 * math.pi)) + math.log1p(-1.0 / (z * z))
    return ln / _LOG10


def _nb_logpmf_fn(mu: float, var: float):
    """Log pmf of Poisson (var <= mu) or negative binomial with this mean/variance."""
    if var <= mu * 1.000001:
        lmu = math.log(mu)

        def pois(n: int) -> float:
            return n * lmu - mu - math.lgamma(n + 1)

        return pois
    r = mu * mu / (var - mu)
    p = r / (r + mu)
    lp, lq, lgr = math.log(p), math.log1p(-p), math.lgamma(r)

    def nb(n: int) -> float:
        return math.lgamma(n + r) - lgr - math.lgamma(n + 1) + r * lp + n * lq

    return nb


def _log10_sum(logs: list[float]) -> float:
    m = max(logs)
    return (m + math.log(sum(math.exp(v - m) for v in logs))) / _LOG10


def tail_surprise(x: float, mu: float, var: float, integral: bool, laplace: bool = False) -> tuple[float, float]:
    """(-log10 P(X >= x), -log10 P(X <= x)) under the predictive distribution.

    Small integer counts (mu < 50) use exact Poisson / negative-binomial tails,
    so 0, 1, 2 per bucket are judged as counts rather than z-scores; other
    cases use a normal tail (with continuity correction for counts), or, for
    series that are not counts with ``laplace``, the Laplace tail whose mean
    absolute deviation is ``sd / 1.25`` (the scale the baseline learns), so
    the surprise grows linearly with the deviation rather than quadratically.
    """
    if mu <= 0.0:
        mu = 1e-3 if integral else 0.0
    sd = math.sqrt(max(var, 1e-12))
    if integral and mu < 50.0 and x == int(x) and abs(x - mu) < 60.0 * sd + 60.0:
        n = int(x)
        logpmf = _nb_logpmf_fn(mu, max(var, mu))
        up = dn = 0.0
        if n > mu:
            terms, i = [], n
            while True:
                t = logpmf(i)
                terms.append(t)
                if t < terms[0] - 40.0 or i > n + 10000:
                    break
                i += 1
            up = -_log10_sum(terms)
        elif n < mu:
            dn = -_log10_sum([logpmf(i) for i in range(0, n + 1)])
        return max(up, 0.0), max(dn, 0.0)
    cc = 0.5 if integral else 0.0
    up = dn = 0.0
    if laplace and not integral:
        b = sd / 1.25
        if x > mu:
            up = (x - mu) / (b * _LOG10) + math.log10(2.0)
        elif x < mu:
            dn = (mu - x) / (b * _LOG10) + math.log10(2.0)
        return up, dn
    if x - cc > mu:
        up = -log10_normal_tail((x - cc - mu) / sd)
    elif x + cc < mu:
        dn = -log10_normal_tail((mu - x - cc) / sd)
    return max(up, 0.0), max(dn, 0.0)


def calibrated(s: float, tail: list[float], n: float, prior: float) -> float:
    """Surprise re-expressed through a key's own surprise distribution.

    A calibrated model has P(S >= s) = 10^-s. The empirical tail frequency at
    the :data:`CAL_EDGES` levels (decayed counts ``tail`` out of ``n``
    buckets, mixed with ``prior`` buckets of the theoretical tail) gives
    p(s); the calibrated surprise is min(s, -log10 p(s)), so heavy-tailed
    series whose big surprises are routine are damped, and a well-modelled
    key is left unchanged.
    """
    if s <= 0.0:
        return 0.0
    m = prior
    ltot = math.log10(n + m)

    def lp_at(j: int) -> float:
        e = CAL_EDGES[j]
        if tail[j] > 0.0:
            return math.log10(tail[j] + m * 10.0 ** -min(e, 300.0)) - ltot
        return math.log10(m) - e - ltot

    lo_e, lo_lp = 0.0, 0.0
    for j, e in enumerate(CAL_EDGES):
        lp = lp_at(j)
        if s <= e:
            lp_s = lo_lp + (lp - lo_lp) * (s - lo_e) / (e - lo_e)
            return min(s, -lp_s)
        lo_e, lo_lp = e, lp
    return min(s, -(lo_lp - (s - lo_e)))


def learn_calibration(tails: tuple[list[float], list[float]], n: float, s_up: float, s_dn: float, window: int) -> float:
    """Count one bucket's surprises into the decayed tails (in place); returns the new bucket count."""
    decay = 1.0 - 1.0 / window
    for s, tail in zip((s_up, s_dn), tails, strict=True):
        for j, e in enumerate(CAL_EDGES):
            tail[j] = tail[j] * decay + (1.0 if s >= e else 0.0)
    return n * decay + 1.0


def likelihood_step(
    st: list[float],
    s: float,
    *,
    cap: float,
    alpha: float,
    window: int,
    min_n: int,
    min_sd: float,
    peak_block: int = 0,
) -> float:
    """One bucket of the anomaly likelihood (Numenta HTM style) for one direction.

    ``st`` = [short-term mean surprise, its long-run mean, its long-run
    variance, buckets seen, this block's peak, the previous block's peak],
    updated in place. The raw surprise,
    capped at ``cap``, enters an EWMA of weight ``alpha``; that short-term mean
    is compared with its own history (EWMA mean and variance over ``window``
    buckets, sd floored at ``min_sd``): the result is -log10 of the normal
    tail, 0 before ``min_n`` buckets, and 0 when the short-term mean is no
    larger than its peak over the last one to two blocks of ``peak_block``
    buckets (0 = off): a burst that recurs within that time is not news.
    Computed before the bucket is learned.
    """
    st[0] += alpha * (min(s, cap) - st[0])
    m = st[0]
    out = 0.0
    if st[3] >= min_n:
        sd = max(math.sqrt(max(st[2], 0.0)), min_sd)
        z = (m - st[1]) / sd
        out = -log10_normal_tail(z) if z > 0 else 0.0
        if peak_block > 0 and m <= max(st[4], st[5]):
            out = 0.0
    if peak_block > 0:
        # Sliding maximum over the last one to two blocks: [this block's max, the previous block's].
        if st[3] % peak_block == 0:
            st[5] = st[4]
            st[4] = 0.0
        st[4] = max(st[4], m)
    st[3] += 1.0
    a = max(1.0 / st[3], 1.0 / window)
    dm = m - st[1]
    st[1] += a * dm
    st[2] = (1 - a) * (st[2] + a * dm * dm)
    return out
