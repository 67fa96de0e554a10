"""Seasonal baseline of one key: what a bucket is expected to be, and how loosely.

Part of the demand-shift detector (:class:`streams.demand.detector.DemandDetector`
extends :class:`SeasonalBaseline`). Tiers, per key and fixed-size:

* a local time-of-week slot mean (``week``) and time-of-day slot mean (``day``),
  each used once it has ``min_slot_seasons`` seasons of history, and an EWMA
  ``level`` (shrunk towards a caller-supplied ``prior`` before any slot is
  ready); for series that are not integer counts the level replaces the slots
  when it fits clearly better (no seasonality);
* integer counts: negative binomial, ``var = mu + a mu^2`` with the
  overdispersion ``a`` learned per tier by weighted moments; other series: an
  EWMA of clipped relative deviations gives ``var = (1.25 rdev mu)^2``.

Learning is robust: inputs are clipped to ``mu +- clip_sd sd``, and the caller
chooses the weight of a bucket (reduced inside or near an alert) and of its
deviation (none inside an alert).
"""

from __future__ import annotations

import math

from .buckets import DAY_S, WEEK_S, local_slot
from .detector_config import DetectorConfig, seasonal_slot_s

__all__ = ["SeasonalBaseline", "TIERS", "OD_REF"]

TIERS = ("week", "day", "level")
#: Reference overdispersion of the moment weights (fixed, so the weights do not feed back).
OD_REF = 0.0156

#: One ready tier: (name, expected value, predictive variance).
Tier = tuple[str, float, float]


class SeasonalBaseline:
    """Slot means, level and noise model of one key (see the module docstring)."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = cfg = config
        self.slot_s = seasonal_slot_s(cfg.bucket_s, cfg.max_week_slots)
        self.week_slots = max(1, WEEK_S // self.slot_s)
        self.day_slots = max(1, DAY_S // self.slot_s)
        # Buckets per slot: slot counts are in buckets, readiness in seasons.
        self._bps = max(1, self.slot_s // cfg.bucket_s)
        self.week_mean = [0.0] * self.week_slots
        self.week_n = [0] * self.week_slots
        self.day_mean = [0.0] * self.day_slots
        self.day_n = [0] * self.day_slots
        self.level = 0.0
        self.level_n = 0
        self.rdev = {t: cfg.init_rdev for t in TIERS}
        # Count overdispersion per tier, as weighted moment sums [sum((x-mu)^2 - mu), sum(mu^2)]
        # (EWMAs; den 0 = nothing learned yet): a = max(0, num / den), var = mu + a mu^2.
        self.od = {t: [0.0, 0.0] for t in TIERS}
        self.integral = True

    def _overdispersion(self, tier: str) -> float:
        num, den = self.od[tier]
        if den <= 0.0:
            return (1.25 * self.config.init_rdev) ** 2
        return max(num, 0.0) / den

    def _spread(self, tier: str) -> float:
        """How loosely a tier fits: its overdispersion for counts, else its relative deviation."""
        if self.integral and self.config.count_model == "nb" and self.config.fit_by_od:
            return self._overdispersion(tier)
        return self.rdev[tier]

    def _mean_var(self, tier: str, mu: float) -> tuple[float, float]:
        if self.integral and self.config.count_model == "nb":
            # Negative binomial: Poisson noise once, plus the learned relative overdispersion.
            m = max(mu, 0.0)
            return mu, max(m + self._overdispersion(tier) * m * m, 1e-9)
        scale = max(abs(mu), 1.0) if self.integral else max(abs(mu), 1e-9)
        sd_rel = 1.25 * self.rdev[tier] * scale
        # Counts: Poisson variance unless the residuals show overdispersion
        # (the empirical deviation already contains the Poisson noise).
        var = max(max(mu, 0.0) if self.integral else 0.0, sd_rel * sd_rel)
        return mu, max(var, 1e-9)

    def _tiers(self, ts_ms: int, prior: float | None) -> tuple[list[Tier], int, int]:
        cfg = self.config
        ws = local_slot(ts_ms, cfg.tz, self.slot_s) % self.week_slots
        ds = ws % self.day_slots
        need = cfg.min_slot_seasons * self._bps
        tiers: list[Tier] = []
        if self.week_n[ws] >= need:
            tiers.append(("week", *self._mean_var("week", self._slot_mu(self.week_mean[ws], self.week_n[ws]))))
        if self.day_n[ds] >= need and self.day_slots > 1:
            tiers.append(("day", *self._mean_var("day", self._slot_mu(self.day_mean[ds], self.day_n[ds]))))
        if (
            tiers
            and (cfg.level_tier == "fit" or (cfg.level_tier == "fit_other" and not self.integral))
            and self.level_n >= cfg.min_level_obs
            and self._spread("level") * cfg.level_margin < min(self._spread(t[0]) for t in tiers)
        ):
            # The level fits better than every seasonal slot: a series without seasonality.
            tiers = [("level", *self._mean_var("level", self.level))]
        if not tiers:
            if prior is not None:
                w = cfg.prior_weight
                mu = (self.level_n * self.level + w * prior) / (self.level_n + w)
                tiers.append(("prior", *self._mean_var("level", mu)))
            elif self.level_n >= cfg.min_level_obs:
                tiers.append(("level", *self._mean_var("level", self.level)))
        return tiers, ws, ds

    def _slot_mu(self, mean: float, n: int) -> float:
        """Slot mean; for counts, never below 1/(seasons+1): a few empty seasons
        do not make one event a certainty-level surprise."""
        if not self.integral:
            return mean
        return max(mean, self._bps / (n + self._bps))

    def expected(self, ts_ms: int, prior: float | None = None) -> float | None:
        """Baseline expected value for a bucket at ``ts_ms`` (None before any history)."""
        tiers, _, _ = self._tiers(ts_ms, prior)
        return tiers[0][1] if tiers else None

    def _learn(self, x: float, ws: int, ds: int, weight: float, dev_weight: float, warm_weight: float = 1.0,
               expected: float | None = None) -> None:
        """Learn one bucket: ready slots and the level at ``weight``, slots still warming up at
        ``warm_weight`` (reduced by the caller inside an alert in a key's first days; an empty
        slot then starts from ``expected``, the bucket's expected value), the deviation at
        ``dev_weight``."""
        cfg = self.config
        # Slot means: running mean until the slot is ready (another tier judged
        # those buckets), then a clipped EWMA per season at ``weight``.
        need = cfg.min_slot_seasons * self._bps
        for tier, means, counts, slot in (
            ("week", self.week_mean, self.week_n, ws),
            ("day", self.day_mean, self.day_n, ds),
        ):
            n = counts[slot]
            if warm_weight < 1.0 and n < need:
                # A slot still warming up learns the bucket at the caller's reduced weight
                # (from the bucket's expected value when empty): a surge in a promoted key's
                # first days is not its time-of-day profile.
                start = means[slot] if n > 0 else (expected if expected is not None else x)
                means[slot] = start + warm_weight * (x - start) / (n + 1)
            elif n == 0:
                means[slot] = x
            elif n < need:
                means[slot] += (x - means[slot]) / (n + 1)
            else:
                mu, var = self._mean_var(tier, means[slot])
                xc = self._clip(x, mu, var)
                self._learn_dev(tier, xc, mu, dev_weight)
                means[slot] = mu + cfg.season_alpha / self._bps * weight * (xc - mu)
            counts[slot] = min(n + 1, 1_000_000)
        if self.level_n == 0:
            self.level = x
        else:
            mu, var = self._mean_var("level", self.level)
            xc = self._clip(x, mu, var)
            self._learn_dev("level", xc, mu, dev_weight)
            w = 1.0 if self.level_n < self.config.min_level_obs else weight
            alpha = max(cfg.level_alpha, 1.0 / (self.level_n + 1)) * w
            self.level = mu + alpha * (xc - mu)
        self.level_n = min(self.level_n + 1, 1_000_000)

    def _clip(self, x: float, mu: float, var: float) -> float:
        band = self.config.clip_sd * math.sqrt(var)
        return min(max(x, mu - band), mu + band)

    def _learn_dev(self, tier: str, xc: float, mu: float, weight: float = 1.0) -> None:
        # Learned outside alerts (inputs are clipped), so a wrong scale recovers.
        if weight <= 0.0:
            return
        a = self.config.dev_alpha * weight
        scale = max(abs(mu), 1.0) if self.integral else max(abs(mu), 1e-9)
        r = abs(xc - mu) / scale
        self.rdev[tier] += a * (r - self.rdev[tier])
        # Overdispersion by weighted moments: e = ((x - mu)^2 - mu) / mu^2 estimates a with
        # variance ~ 2 (var / mu^2)^2, so it is weighted by ~(mu^2 / var)^2 = (mu / (1 + a mu))^2,
        # taken at a fixed reference a (weights that follow the estimate feed back into it and
        # bias it low): relative residuals count equally on large counts, sparse buckets little.
        m = max(mu, 0.0)
        if m <= 0.0:
            return
        od = self.od[tier]
        g = 1.0 / (1.0 + OD_REF * m)
        w = (m * g) ** 2
        if od[1] <= 0.0:  # first residual: start from the prior overdispersion
            od[0], od[1] = self._overdispersion(tier) * w, w
        od[0] += a * (((xc - mu) ** 2 - m) * g * g - od[0])
        od[1] += a * (w - od[1])

    def scale_baseline(self, ratio: float) -> None:
        """Multiply every slot mean and the level by ``ratio`` (a re-learned level)."""
        self.week_mean = [m * ratio for m in self.week_mean]
        self.day_mean = [m * ratio for m in self.day_mean]
        self.level *= ratio
