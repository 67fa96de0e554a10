"""Streaming per-key demand-shift detector: seasonal baseline, count-aware surprise, evidence.

One :class:`DemandDetector` per key. Each closed bucket goes through
:meth:`DemandDetector.update` once, in time order; the decision for bucket t
(including its ``expected`` value and 95% band) uses only data up to t
(causal), then the bucket is learned. Parameters: :class:`DetectorConfig`
(``detector_config.py``); tails, calibration and likelihood: ``surprise.py``.

Model, per key (fixed size, see :meth:`DemandDetector.snapshot`):

* baseline tiers: a local time-of-week slot mean (``week``), a local
  time-of-day slot mean (``day``) and an EWMA ``level``; a slot tier is used
  once it has ``min_slot_seasons`` seasons of history; before that the level
  (shrunk towards a caller-supplied ``prior``) is the baseline. For series
  that are not integer counts the level replaces the slots when it fits
  clearly better (no seasonality);
* integer counts: negative binomial, ``var = mu + a mu^2``; other series: a
  robust relative deviation per tier gives ``var = (1.25 rdev mu)^2``;
* surprise = -log10 tail probability, calibrated by the key's own history;
* evidence: counts use a CUSUM of calibrated surprise plus a run-sum test
  (sparse keys going to 0); other series use an anomaly likelihood of the
  short-term mean surprise (Numenta HTM style) that speaks only above its
  recent peak. An alert opens on a bucket that moved in its direction, past
  the volume floor (counts), after a two-day warm-up (without a prior); it
  stays open while buckets remain surprising and resolves once normal
  buckets outnumber surprising ones by ``resolve_buckets``, then cools down;
* learning is robust: inputs are clipped, buckets in an alert are learned at
  a reduced weight and do not teach the noise model;
  :meth:`DemandDetector.rebaseline` re-learns the level after a persistent
  shift (the lifecycle's NEW_NORMAL).
"""

from __future__ import annotations

import math
from typing import Any

from .buckets import DAY_S, WEEK_S, local_slot
from .detector_config import Decision, DetectorConfig, seasonal_slot_s
from .novelty import DailyPeaks, local_day
from .surprise import CAL_EDGES, calibrated, learn_calibration, likelihood_step, tail_surprise

__all__ = [
    "DetectorConfig",
    "Decision",
    "DemandDetector",
    "tail_surprise",
    "seasonal_slot_s",
]

_TIERS = ("week", "day", "level")
#: Cap on raw surprise before calibration (so a 20x shock still differs from a routine 8x spike).
_RAW_CAP = 10000.0
#: Reference overdispersion of the moment weights (fixed, so the weights do not feed back).
_OD_REF = 0.0156
#: Two-sided 95% normal quantile (the expected +- band of a Decision).
_Z95 = 1.959964


def _severity(observed: float, expected: float, direction: int) -> int:
    """1-4 from the observed/expected ratio in the alert's direction."""
    if direction > 0:
        ratio = observed / max(expected, 1e-9)
    else:
        ratio = max(expected, 0.0) / max(observed, expected * 0.01, 1e-9)
    if ratio >= 10.0:
        return 4
    if ratio >= 4.0:
        return 3
    if ratio >= 2.0:
        return 2
    return 1


class DemandDetector:
    """Streaming detector for one key; ``update(ts_ms, count) -> Decision``."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = cfg = config or DetectorConfig()
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
        self.rdev = {t: cfg.init_rdev for t in _TIERS}
        # Count overdispersion per tier, as weighted moment sums [sum((x-mu)^2 - mu), sum(mu^2)]
        # (EWMAs; den 0 = nothing learned yet): a = max(0, num / den), var = mu + a mu^2.
        self.od = {t: [0.0, 0.0] for t in _TIERS}
        self.integral = True
        self.ev_up = 0.0
        self.ev_dn = 0.0
        # [excess, expected, variance, buckets] summed over the current evidence run.
        # [excess, expected, variance, buckets, lag-1 correlation when the run started].
        self.run_up = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.run_dn = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.direction = 0
        self.normal_run = 0
        self.cooldown = 0
        self.in_alert = 0
        self.alert_obs = 0.0
        self.alert_exp = 0.0
        # Decayed counts of buckets whose surprise reached each CAL_EDGES level,
        # per direction, and the decayed bucket count (surprise calibration).
        self.cal_up = [0.0] * len(CAL_EDGES)
        self.cal_dn = [0.0] * len(CAL_EDGES)
        self.cal_n = 0.0
        # Lag-1 autocorrelation of standardised residuals: [last z, E[z z-1], E[z^2]].
        self.ac = [0.0, 0.0, 1.0]
        # Anomaly likelihood per direction: [short EWMA of surprise, long mean, long var, n].
        self.lik = [[0.0] * 6, [0.0] * 6]
        self.lik_s = [0.0, 0.0]
        # Peak short-term surprise per time-of-day slot over the last days (daily novelty of the
        # likelihood): created when the key turns out not to be counts (counts open on the CUSUM).
        self.daily: DailyPeaks | None = None
        self._last_excess = 0.0
        self._last_mu = 0.0
        self.n = 0
        self.last_ts_ms: int | None = None
        self.first_ts_ms: int | None = None

    # ------------------------------------------------------------------ model
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

    def _tiers(self, ts_ms: int, prior: float | None) -> tuple[list[tuple[str, float, float]], int, int]:
        cfg = self.config
        ws = local_slot(ts_ms, cfg.tz, self.slot_s) % self.week_slots
        ds = ws % self.day_slots
        need = cfg.min_slot_seasons * self._bps
        tiers: list[tuple[str, float, float]] = []
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

    # ----------------------------------------------------------------- update
    def update(self, ts_ms: int, count: float, prior: float | None = None) -> Decision:
        """Score the bucket starting at ``ts_ms`` with value ``count``, then learn it."""
        cfg = self.config
        x = float(count)
        if self.integral and x != int(x):
            self.integral = False
        tiers, ws, ds = self._tiers(ts_ms, prior)
        s_up = s_dn = 0.0
        mu_ref: float | None = None
        sd_ref: float | None = None
        tier_name = "none"
        if tiers:
            best = None
            # A well-established weekly slot that fits better than the daily
            # tier speaks even when the daily tier is less surprised.
            week_trusted = (
                cfg.tier_rule == "fit"
                and len(tiers) > 1
                and self.week_n[ws] >= cfg.fit_min_seasons * self._bps
                and self._spread("week") <= self._spread("day")
            )
            for name, mu, var in tiers:
                up, dn = tail_surprise(x, mu, var, self.integral)
                up, dn = min(up, _RAW_CAP), min(dn, _RAW_CAP)
                # The least surprised ready tier speaks for the bucket.
                key = max(up, dn)
                if name == "week" and week_trusted:
                    key = -1.0
                if best is None or key < best[0]:
                    best = (key, name, mu, var, up, dn)
            assert best is not None
            _, tier_name, mu_ref, var_ref, s_up, s_dn = best
            sd_ref = math.sqrt(var_ref)
            raw_up, raw_dn = s_up, s_dn
            if cfg.calib:
                s_up = self._calibrated(s_up, self.cal_up)
                s_dn = self._calibrated(s_dn, self.cal_dn)
            s_up, s_dn = min(s_up, cfg.max_surprise), min(s_dn, cfg.max_surprise)

        opened = resolved = False
        var_ref = sd_ref * sd_ref if sd_ref is not None else 0.0
        if mu_ref is not None:
            self._accumulate(x, mu_ref, var_ref, s_up, s_dn)
            self._likelihood(raw_up, raw_dn)
            self._daily_novelty(ts_ms, ds)
        if self.direction != 0:
            self.in_alert += 1
            self.alert_obs += x
            self.alert_exp += mu_ref if mu_ref is not None else x
            s_dir = s_up if self.direction > 0 else s_dn
            if s_dir >= cfg.stay_surprise:
                # Still shifted: net normal buckets count down (or restart, resolve_rule="run").
                self.normal_run = max(0, self.normal_run - 1) if cfg.resolve_rule == "net" else 0
            else:
                self.normal_run += 1
                if self.normal_run >= cfg.resolve_buckets:
                    self._close()
                    resolved = True
        elif self.cooldown > 0:
            self.cooldown -= 1
        elif mu_ref is not None and (prior is not None or self._warm(ts_ms)):
            self._last_excess, self._last_mu = x - mu_ref, max(mu_ref, 0.0)
            d = self._should_open()
            if d:
                opened = True
                self.direction = d
                self.in_alert = 1
                self.normal_run = 0
                self.alert_obs = x
                self.alert_exp = mu_ref
        severity = 0
        if self.direction != 0 and cfg.severity_cumulative:
            severity = _severity(self.alert_obs, self.alert_exp, self.direction)
        elif self.direction != 0 and mu_ref is not None:
            severity = _severity(x, mu_ref, self.direction)
        elif self.direction != 0:
            severity = 1
        lo = mu_ref - _Z95 * (sd_ref or 0.0) if mu_ref is not None else 0.0
        decision = Decision(
            ts_ms=ts_ms,
            observed=x,
            expected=mu_ref,
            sd=sd_ref,
            surprise_up=s_up,
            surprise_down=s_dn,
            evidence_up=self.ev_up,
            evidence_down=self.ev_dn,
            direction=self.direction,
            opened=opened,
            resolved=resolved,
            severity=severity,
            buckets_in_alert=self.in_alert if self.direction else 0,
            tier=tier_name,
            lower=None if mu_ref is None else (max(lo, 0.0) if self.integral else lo),
            upper=None if mu_ref is None else mu_ref + _Z95 * (sd_ref or 0.0),
        )
        if mu_ref is not None and sd_ref is not None and (self.direction == 0 or cfg.alert_dev_weight > 0.0):
            # Residual autocorrelation, like the deviation, is not learned from an alert:
            # a sustained shift would look like strongly correlated noise.
            z = min(max((x - mu_ref) / max(sd_ref, 1e-9), -3.0), 3.0)
            a = cfg.dev_alpha * (cfg.alert_dev_weight if self.direction != 0 else 1.0)
            self.ac[1] += a * (z * self.ac[0] - self.ac[1])
            self.ac[2] += a * (z * z - self.ac[2])
            self.ac[0] = z
        if mu_ref is not None and (
            self.direction == 0 or cfg.calib_learn == "all" or (opened and cfg.calib_learn == "open")
        ):
            self._learn_calibration(raw_up, raw_dn)
        suspicious = self.direction != 0 or max(s_up, s_dn) >= cfg.guard_surprise
        if self.direction != 0:
            dev_weight = cfg.alert_dev_weight  # an alert's residuals are the shift, not noise
        elif suspicious and cfg.dev_guard:
            dev_weight = cfg.anomaly_learn_weight
        else:
            dev_weight = 1.0
        self._learn(x, ws, ds, cfg.anomaly_learn_weight if suspicious else 1.0, dev_weight)
        if self.first_ts_ms is None:
            self.first_ts_ms = ts_ms
        self.n += 1
        self.last_ts_ms = ts_ms
        return decision

    def _warm(self, ts_ms: int) -> bool:
        """A key without a prior opens alerts only after ``warmup_s`` of history."""
        if self.first_ts_ms is None:
            self.first_ts_ms = ts_ms
        return ts_ms - self.first_ts_ms >= self.config.warmup_s * 1000

    def _calibrated(self, s: float, tail: list[float]) -> float:
        return calibrated(s, tail, self.cal_n, self.config.calib_prior)

    def _learn_calibration(self, s_up: float, s_dn: float) -> None:
        self.cal_n = learn_calibration((self.cal_up, self.cal_dn), self.cal_n, s_up, s_dn, self.config.calib_window)

    def _likelihood(self, s_up: float, s_dn: float) -> None:
        """Anomaly likelihood per direction (see :func:`likelihood_step`)."""
        cfg = self.config
        block = max(1, round(cfg.novelty_block_s / cfg.bucket_s)) if cfg.novelty_block_s > 0 else 0
        for i, s in enumerate((s_up, s_dn)):
            self.lik_s[i] = likelihood_step(
                self.lik[i], s, cap=cfg.lik_cap, alpha=cfg.lik_alpha, window=cfg.lik_window,
                min_n=cfg.lik_min_n, min_sd=cfg.lik_min_sd, peak_block=block,
            )

    def _daily_novelty(self, ts_ms: int, ds: int) -> None:
        """Silence the likelihood of a burst that recurred around this time on each of the last days."""
        cfg = self.config
        if self.integral or cfg.daily_novelty_days <= 0 or self.day_slots < 4:
            return
        if self.daily is None:
            self.daily = DailyPeaks(self.day_slots, cfg.daily_novelty_days, cfg.daily_novelty_spread,
                                    cfg.daily_novelty_margin)
        day = local_day(ts_ms, cfg.tz)
        m = (self.lik[0][0], self.lik[1][0])
        for i in (0, 1):
            if self.lik_s[i] > 0.0 and self.daily.routine(i, ds, day, m[i]):
                self.lik_s[i] = 0.0
        self.daily.learn(ds, day, m)

    def _accumulate(self, x: float, mu: float, var: float, s_up: float, s_dn: float) -> None:
        cfg = self.config
        self.ev_up = max(0.0, cfg.decay * self.ev_up + s_up - cfg.k)
        self.ev_dn = max(0.0, cfg.decay * self.ev_dn + s_dn - cfg.k)
        for ev, run in ((self.ev_up, self.run_up), (self.ev_dn, self.run_dn)):
            if ev > 0.0:
                if run[3] == 0.0:
                    run[4] = self._rho()
                run[0] += x - mu
                run[1] += max(mu, 0.0)
                run[2] += var
                run[3] += 1.0
            else:
                run[0] = run[1] = run[2] = run[3] = run[4] = 0.0

    def _should_open(self) -> int:
        cfg = self.config
        for d, ev, run in ((1, self.ev_up, self.run_up), (-1, self.ev_dn, self.run_dn)):
            excess = run[0] * d
            lik = cfg.evidence == "likelihood" or (cfg.evidence == "auto" and not self.integral)
            floor = self.integral or cfg.volume_floor == "all"
            if cfg.open_on_excess and self._last_excess * d <= 0.0:
                continue  # an alert opens on a bucket that itself moved in its direction
            if lik and run[3] == 0.0:
                excess = self._last_excess * d
                if (not floor or (excess >= cfg.min_excess and excess >= cfg.min_rel_change * max(self._last_mu, 1e-9))) \
                        and excess > 0 and self.lik_s[0 if d > 0 else 1] >= cfg.lik_h:
                    return d
                continue
            if excess <= 0 or (floor and (excess < cfg.min_excess or excess < cfg.min_rel_change * max(run[1], 1e-9))):
                continue
            if (self.lik_s[0 if d > 0 else 1] >= cfg.lik_h) if lik else (ev >= cfg.h):
                return d
            # Sparse keys: many mildly surprising buckets can add up to a clear
            # shift of the run's total count (e.g. 4/h falling to 0 for hours).
            if run[3] < cfg.run_min_buckets or cfg.run_sum == "off" or (cfg.run_sum == "counts" and not self.integral):
                continue
            total = max(run[1] + run[0], 0.0)
            rho = run[4] if cfg.run_rho_frozen else self._rho()
            var_run = run[2] * self._run_var_factor(run[3], rho) if cfg.run_autocorr else run[2]
            up, dn = tail_surprise(round(total) if self.integral else total, run[1], var_run, self.integral)
            s_run = up if d > 0 else dn
            if cfg.calib_run:
                s_run = self._calibrated(s_run, self.cal_up if d > 0 else self.cal_dn)
            if s_run >= cfg.h + cfg.k:
                return d
        return 0

    def _rho(self) -> float:
        """Learned lag-1 correlation of the standardised residuals, in [0, 0.95]."""
        return min(max(self.ac[1] / max(self.ac[2], 1e-9), 0.0), 0.95)

    def _run_var_factor(self, n: float, rho: float | None = None) -> float:
        """Var(sum of n residuals) / (n var) under AR(1) with lag-1 correlation ``rho``
        (default: the learned one)."""
        if rho is None:
            rho = self._rho()
        if rho <= 0.0 or n <= 1:
            return 1.0
        return (1 + rho) / (1 - rho) - 2 * rho * (1 - rho**n) / (n * (1 - rho) ** 2)

    def _close(self) -> None:
        self.direction = 0
        self.normal_run = 0
        self.in_alert = 0
        self.cooldown = self.config.cooldown_buckets
        self.ev_up = self.ev_dn = 0.0
        self.run_up[:] = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.run_dn[:] = [0.0, 0.0, 0.0, 0.0, 0.0]

    def _learn(self, x: float, ws: int, ds: int, weight: float, dev_weight: float) -> None:
        cfg = self.config
        # Slot means: running mean until the slot is ready (another tier judged
        # those buckets), then a clipped EWMA per season at ``weight``.
        need = cfg.min_slot_seasons * self._bps
        for tier, means, counts, slot in (
            ("week", self.week_mean, self.week_n, ws),
            ("day", self.day_mean, self.day_n, ds),
        ):
            n = counts[slot]
            if n == 0:
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
        g = 1.0 / (1.0 + _OD_REF * m)
        w = (m * g) ** 2
        if od[1] <= 0.0:  # first residual: start from the prior overdispersion
            od[0], od[1] = self._overdispersion(tier) * w, w
        od[0] += a * (((xc - mu) ** 2 - m) * g * g - od[0])
        od[1] += a * (w - od[1])

    def rebaseline(self) -> float:
        """Re-learn the baseline at the level of the open alert (NEW_NORMAL).

        Scales every slot mean and the level by observed/expected over the
        alert, closes the alert and returns the ratio used.
        """
        if self.alert_exp <= 0.0:
            ratio = 1.0
        else:
            ratio = max(self.alert_obs, 0.0) / self.alert_exp
        self.week_mean = [m * ratio for m in self.week_mean]
        self.day_mean = [m * ratio for m in self.day_mean]
        self.level *= ratio
        self._close()
        self.cooldown = 0
        return ratio

    # ---------------------------------------------------------------- persist
    def snapshot(self) -> dict[str, Any]:
        """JSON-safe, fixed-size state (config not included)."""
        out: dict[str, Any] = {
            "v": 1,
            "week_mean": list(self.week_mean),
            "week_n": list(self.week_n),
            "day_mean": list(self.day_mean),
            "day_n": list(self.day_n),
            "level": self.level,
            "level_n": self.level_n,
            "rdev": dict(self.rdev),
            "od": {t: list(v) for t, v in self.od.items()},
            "integral": self.integral,
            "ev": [self.ev_up, self.ev_dn],
            "run": [list(self.run_up), list(self.run_dn)],
            "alert": [self.direction, self.normal_run, self.cooldown, self.in_alert],
            "alert_sums": [self.alert_obs, self.alert_exp],
            "cal": [list(self.cal_up), list(self.cal_dn), self.cal_n],
            "ac": list(self.ac),
            "lik": [list(self.lik[0]), list(self.lik[1]), list(self.lik_s)],
            "n": self.n,
            "last_ts_ms": self.last_ts_ms,
            "first_ts_ms": self.first_ts_ms,
        }
        if self.daily is not None:  # non-count keys only
            out["daily"] = self.daily.snapshot()
        return out

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], config: DetectorConfig | None = None) -> DemandDetector:
        """Restore a detector from :meth:`snapshot` output (same config required)."""
        det = cls(config)
        if len(data["week_mean"]) != det.week_slots or len(data["day_mean"]) != det.day_slots:
            raise ValueError("snapshot slot layout does not match the config")
        det.week_mean = [float(v) for v in data["week_mean"]]
        det.week_n = [int(v) for v in data["week_n"]]
        det.day_mean = [float(v) for v in data["day_mean"]]
        det.day_n = [int(v) for v in data["day_n"]]
        det.level = float(data["level"])
        det.level_n = int(data["level_n"])
        det.rdev = {t: float(data["rdev"][t]) for t in _TIERS}
        od = data.get("od")
        if od is not None:
            det.od = {t: [float(v) for v in od[t]] for t in _TIERS}
        else:
            # Older snapshot: start the overdispersion from the relative deviation, worth one
            # bucket at the level's moment weight.
            m = max(det.level, 1.0)
            w = (m / (1.0 + _OD_REF * m)) ** 2
            det.od = {t: [(1.25 * det.rdev[t]) ** 2 * w, w] for t in _TIERS}
        det.integral = bool(data["integral"])
        det.ev_up, det.ev_dn = (float(v) for v in data["ev"])
        if "ac" in data:
            det.ac = [float(v) for v in data["ac"]]
        rho = det._rho()
        # Older snapshots: runs without a bucket count or a starting correlation.
        det.run_up = ([float(v) for v in data["run"][0]] + [0.0, 0.0])[:4] + [rho]
        det.run_dn = ([float(v) for v in data["run"][1]] + [0.0, 0.0])[:4] + [rho]
        if len(data["run"][0]) >= 5:
            det.run_up[4] = float(data["run"][0][4])
            det.run_dn[4] = float(data["run"][1][4])
        det.direction, det.normal_run, det.cooldown, det.in_alert = (int(v) for v in data["alert"])
        det.alert_obs, det.alert_exp = (float(v) for v in data["alert_sums"])
        cal = data.get("cal")
        if cal is not None:
            det.cal_up = [float(v) for v in cal[0]]
            det.cal_dn = [float(v) for v in cal[1]]
            det.cal_n = float(cal[2])
        lik = data.get("lik")
        if lik is not None:  # older snapshots: the likelihood starts empty
            det.lik = [([float(v) for v in lik[j]] + [0.0, 0.0])[:6] for j in (0, 1)]
            det.lik_s = [float(v) for v in lik[2]]
        daily = data.get("daily")
        if daily is not None:  # absent for counts and older snapshots (the daily peaks start empty)
            det.daily = DailyPeaks(det.day_slots, max(det.config.daily_novelty_days, 1),
                                   det.config.daily_novelty_spread, det.config.daily_novelty_margin)
            det.daily.restore(daily)
        det.n = int(data["n"])
        det.last_ts_ms = None if data["last_ts_ms"] is None else int(data["last_ts_ms"])
        first = data.get("first_ts_ms")  # older snapshots: warmed up
        det.first_ts_ms = int(first) if first is not None else (0 if det.n else None)
        return det
