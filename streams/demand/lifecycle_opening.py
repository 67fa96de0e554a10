"""The lifecycle's own tests for opening a shift, besides the detector's OPEN (Lifecycle items 5
and 9 in docs/demand.md): the sustained-shift test (EWMAs of standardised residuals over a day
and six hours), the week-on-week test (a day's sum against the same day a week ago) and the
halving test (a CUSUM of the evidence that a count fell to half of its baseline, to a fifth in a
key's first two weeks). Each returns the direction it opens in, or 0. Their state lives on the
:class:`~streams.demand.lifecycle.AlertLifecycle` (``slow``, ``days``, ``halved``, ``calm``), so
its snapshot format is theirs."""

from __future__ import annotations

import math

from .detector import Decision
from .lifecycle_config import LifecycleConfig
from .lifecycle_evidence import halving_evidence
from .lifecycle_evidence import variance as _variance

__all__ = ["OpeningTests"]


class OpeningTests:
    """Mixed into :class:`~streams.demand.lifecycle.AlertLifecycle`, which owns the state."""

    config: LifecycleConfig
    slow: list[float]
    days: list[float]
    week_scale: float | None
    halved: float
    calm: float

    @property
    def active(self) -> bool:  # overridden by AlertLifecycle
        raise NotImplementedError

    def _slow_test(self, d: Decision) -> int:
        """Update the sustained-shift EWMA with this bucket; its direction when it fires, else 0."""
        cfg, sl = self.config, self.slow
        if cfg.slow_buckets <= 0 or d.expected is None or d.sd is None or d.sd <= 0:
            return 0
        r = max(-4.0, min(4.0, (d.observed - d.expected) / d.sd))
        lam = 1.0 / cfg.slow_buckets
        sl[0] += lam * (r - sl[0])
        if cfg.fast_buckets > 0:
            sl[7] += (r - sl[7]) / cfg.fast_buckets
        sl[5] += lam * (d.observed - sl[5])
        sl[6] += lam * (max(d.expected, 0.0) - sl[6])
        if not self.active and d.direction == 0:
            # The noise of the residuals, learned outside alerts only (an alert is not noise).
            a = 1.0 / 500.0 if sl[4] > 50 else 1.0 / (sl[4] + 1.0)
            sl[2] += a * (r * sl[1] - sl[2])
            sl[3] += a * (r * r - sl[3])
            sl[4] = min(sl[4] + 1.0, 1e6)
        sl[1] = r
        if self.active or sl[4] < cfg.slow_warmup:
            return 0
        rel = sl[5] / sl[6] - 1.0 if sl[6] > 0 else 0.0
        scales = [(sl[0], lam, cfg.slow_threshold)]
        if cfg.fast_buckets > 0:
            scales.append((sl[7], 1.0 / cfg.fast_buckets, cfg.fast_threshold))
        for z, lm, threshold in scales:
            rho = min(max(sl[2] / max(sl[3], 1e-9), 0.0), 0.9) * (1.0 - lm)
            sd = math.sqrt(max(sl[3], 0.25) * lm / (2.0 - lm) * (1.0 + rho) / (1.0 - rho))
            if z >= threshold * sd and rel >= cfg.slow_min_rel:
                return 1
            if z <= -threshold * sd and rel <= -cfg.slow_min_rel / (1.0 + cfg.slow_min_rel):
                return -1
        return 0

    def _halving_test(self, d: Decision, integral: bool) -> int:
        """-1 when the evidence that a count fell to ``collapse_ratio`` (half) of its baseline
        (in a key's first two weeks: ``learning_collapse_ratio``, a fifth) reaches the
        resolution's threshold, on a bucket below the baseline; else 0 (see
        :func:`~streams.demand.lifecycle_evidence.halving_evidence`)."""
        cfg = self.config
        # In a key's first weeks a "halving" is mostly its half-learned seasonal baseline: until
        # the sustained-shift test's two weeks of learning, only a fall below about half counts,
        # and not for three days after a shift (its slots learned part of it: a product's sales
        # back at their level after a surge read as a collapse), six after a rise it was promoted in.
        learned = self.slow[4] >= cfg.slow_warmup
        ratio = cfg.collapse_ratio if learned else cfg.learning_collapse_ratio
        if (ratio <= 0.0 or not integral or self.active or d.expected is None
                or (not learned and (d.tier not in cfg.alert_tiers or self.calm < cfg.new_normal_buckets))):
            self.halved = 0.0
            return 0
        e = max(d.expected, 0.0)
        # Each sparse bucket, and in the first weeks every bucket (one slot of a baseline learned
        # from days can be far off), weighs at most a quarter of the threshold.
        self.halved = halving_evidence(self.halved, d.observed, e, _variance(d, e, integral), ratio,
                                       cfg.back_threshold / 4.0, capped=not learned)
        if self.halved >= cfg.back_threshold and d.observed < e:
            self.halved = 0.0
            return -1
        return 0

    def _week_test(self, d: Decision) -> int:
        """Once a day: the day's observed sum against the same day a week ago (its expected sum,
        or in a key's first two weeks its observed one).

        A ramp (spending coming back over a week) is learned by the detector as it rises, so its
        residuals stay small; a week on, the level is clearly elsewhere. Fires (outside alerts,
        after a clean week) when the day is ``week_rel`` (25 %) or more off and ``3`` standard
        deviations clear of Poisson noise plus a 10 % day-to-day drift."""
        cfg, w = self.config, self.days
        if cfg.week_rel <= 0 or d.expected is None:
            return 0
        w[0] += 1.0
        w[1] += d.observed
        if d.tier not in cfg.alert_tiers or self.slow[4] < cfg.slow_warmup:
            # The detector's expectation of a day is a fair reference a week on only once it has
            # learned for two weeks: a key's first days are judged by a cold running level (every
            # key "surged" on its eighth day) and its first weeks by a day tier that does not know
            # the weekend yet. Such a day is remembered by what it observed (below).
            w[2] = -1.0
        elif w[2] >= 0.0:
            w[2] += max(d.expected, 0.0)
        if w[0] < cfg.recent_buckets:
            return 0
        observed, expected = w[1], w[2]
        past = w[3:]
        # References: an expected sum (>= 0), or an observed one stored negated.
        w[:] = [0.0, 0.0, 0.0, *(past + [expected if expected >= 0.0 else -observed])[-7:]]
        if self.active or len(past) < 7 or past[0] == 0.0:
            return 0
        base = abs(past[0])
        # An observed reference carries its own day's noise too: twice the count variance.
        sd = math.sqrt((1.0 if past[0] > 0 else 2.0) * base * max(1.0, self.slow[3]) + (0.1 * base) ** 2)
        direction = 0
        if observed >= base * (1.0 + cfg.week_rel) and observed - base >= 3.0 * sd:
            direction = 1
        elif observed <= base / (1.0 + cfg.week_rel) and base - observed >= 3.0 * sd:
            direction = -1
        if direction and expected > 0:
            self.week_scale = base / expected  # judge the alert against the level of a week ago
        return direction
