"""Streaming per-key demand-shift detector: surprise, evidence and the detector's own alert.

One :class:`DemandDetector` per key. Each closed bucket goes through
:meth:`DemandDetector.update` once, in time order; the decision for bucket t
(including its ``expected`` value and 95% band) uses only data up to t
(causal), then the bucket is learned. The parts, by noun:

* ``baseline.py`` -- the seasonal baseline (week / day slot means, EWMA level,
  negative binomial or relative-deviation noise), which this class extends;
* ``surprise.py`` -- tail probabilities, their calibration, the anomaly
  likelihood; ``novelty.py`` -- the daily novelty of the likelihood;
* ``detector_config.py`` -- every parameter, and the :class:`Decision`;
* ``detector_state.py`` -- the fixed-size JSON snapshot and its restore.

Here: surprise = -log10 tail probability under the least surprised ready tier,
calibrated by the key's own history; evidence: counts use a CUSUM of calibrated
surprise plus a run-sum test (sparse keys going to 0); other series use an
anomaly likelihood of the short-term mean surprise (Numenta HTM style) that
speaks only above its recent peak and above its peak around the same time on
the last two days. An alert opens on a bucket that moved in its direction,
past the volume floor (counts), after a two-day warm-up (without a prior); it
stays open while buckets remain surprising and resolves once normal buckets
outnumber surprising ones by ``resolve_buckets``, then cools down. Buckets in
an alert are learned at a reduced weight and do not teach the noise model;
:meth:`DemandDetector.rebaseline` re-learns the level after a persistent shift
(the lifecycle's NEW_NORMAL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import detector_state
from .baseline import SeasonalBaseline
from .detector_config import Decision, DetectorConfig, seasonal_slot_s
from .detector_state import lag1_rho
from .novelty import DailyPeaks, local_day
from .surprise import CAL_EDGES, calibrated, learn_calibration, likelihood_step, tail_surprise

__all__ = [
    "DetectorConfig",
    "Decision",
    "DemandDetector",
    "tail_surprise",
    "seasonal_slot_s",
]

#: Cap on raw surprise before calibration (so a 20x shock still differs from a routine 8x spike).
_RAW_CAP = 10000.0
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


@dataclass
class _Scored:
    """One bucket judged against the baseline, before any learning."""

    ws: int
    ds: int
    tier: str = "none"
    mu: float | None = None
    sd: float | None = None
    s_up: float = 0.0  # calibrated, capped at max_surprise
    s_dn: float = 0.0
    raw_up: float = 0.0  # before calibration
    raw_dn: float = 0.0


class DemandDetector(SeasonalBaseline):
    """Streaming detector for one key; ``update(ts_ms, count) -> Decision``."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__(config or DetectorConfig())
        self.ev_up = 0.0
        self.ev_dn = 0.0
        # [excess, expected, variance, buckets, lag-1 correlation when the run started],
        # summed over the current evidence run.
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
        # Anomaly likelihood per direction: [short EWMA of surprise, long mean, long var, n,
        # this block's peak, the previous block's peak].
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

    # ----------------------------------------------------------------- update
    def update(self, ts_ms: int, count: float, prior: float | None = None) -> Decision:
        """Score the bucket starting at ``ts_ms`` with value ``count``, then learn it."""
        x = float(count)
        if self.integral and x != int(x):
            self.integral = False
        sc = self._score(ts_ms, x, prior)
        if sc.mu is not None:
            var = sc.sd * sc.sd if sc.sd is not None else 0.0
            self._accumulate(x, sc.mu, var, sc.s_up, sc.s_dn)
            lik_in = (sc.s_up, sc.s_dn) if self.config.lik_input == "calibrated" else (sc.raw_up, sc.raw_dn)
            self._likelihood(*lik_in)
            self._daily_novelty(ts_ms, sc.ds)
        opened, resolved = self._alert_step(ts_ms, x, sc, prior)
        decision = self._decision(ts_ms, x, sc, opened, resolved)
        self._learn_bucket(ts_ms, x, sc, opened)
        if self.first_ts_ms is None:
            self.first_ts_ms = ts_ms
        self.n += 1
        self.last_ts_ms = ts_ms
        return decision

    def _score(self, ts_ms: int, x: float, prior: float | None) -> _Scored:
        """Surprise of ``x`` under the tier that speaks for this bucket (the least surprised ready
        tier, or a well-established weekly slot that fits no worse than the daily tier)."""
        cfg = self.config
        tiers, ws, ds = self._tiers(ts_ms, prior)
        sc = _Scored(ws, ds)
        if not tiers:
            return sc
        week_trusted = (
            cfg.tier_rule == "fit"
            and len(tiers) > 1
            and self.week_n[ws] >= cfg.fit_min_seasons * self._bps
            and self._spread("week") <= self._spread("day")
        )
        best: tuple[float, str, float, float, float, float] | None = None
        for name, mu, var in tiers:
            up, dn = tail_surprise(x, mu, var, self.integral, cfg.other_tail == "laplace")
            up, dn = min(up, _RAW_CAP), min(dn, _RAW_CAP)
            key = -1.0 if name == "week" and week_trusted else max(up, dn)
            if best is None or key < best[0]:
                best = (key, name, mu, var, up, dn)
        assert best is not None
        _, sc.tier, sc.mu, var_ref, sc.raw_up, sc.raw_dn = best
        sc.sd = math.sqrt(var_ref)
        s_up, s_dn = sc.raw_up, sc.raw_dn
        if cfg.calib:
            s_up = self._calibrated(s_up, self.cal_up)
            s_dn = self._calibrated(s_dn, self.cal_dn)
        sc.s_up, sc.s_dn = min(s_up, cfg.max_surprise), min(s_dn, cfg.max_surprise)
        return sc

    def _alert_step(self, ts_ms: int, x: float, sc: _Scored, prior: float | None) -> tuple[bool, bool]:
        """Keep, resolve or open the detector's alert for this bucket: (opened, resolved)."""
        cfg = self.config
        if self.direction != 0:
            self.in_alert += 1
            self.alert_obs += x
            self.alert_exp += sc.mu if sc.mu is not None else x
            s_dir = sc.s_up if self.direction > 0 else sc.s_dn
            if s_dir >= cfg.stay_surprise:
                # Still shifted: net normal buckets count down (or restart, resolve_rule="run").
                self.normal_run = max(0, self.normal_run - 1) if cfg.resolve_rule == "net" else 0
                return False, False
            self.normal_run += 1
            if self.normal_run >= cfg.resolve_buckets:
                self._close()
                return False, True
            return False, False
        if self.cooldown > 0:
            self.cooldown -= 1
            return False, False
        if sc.mu is None or not (prior is not None or self._warm(ts_ms)):
            return False, False
        self._last_excess, self._last_mu = x - sc.mu, max(sc.mu, 0.0)
        d = self._should_open()
        if not d:
            return False, False
        self.direction = d
        self.in_alert = 1
        self.normal_run = 0
        self.alert_obs = x
        self.alert_exp = sc.mu
        return True, False

    def _decision(self, ts_ms: int, x: float, sc: _Scored, opened: bool, resolved: bool) -> Decision:
        cfg, mu = self.config, sc.mu
        severity = 0
        if self.direction != 0 and cfg.severity_cumulative:
            severity = _severity(self.alert_obs, self.alert_exp, self.direction)
        elif self.direction != 0 and mu is not None:
            severity = _severity(x, mu, self.direction)
        elif self.direction != 0:
            severity = 1
        half = _Z95 * (sc.sd or 0.0)
        lo = mu - half if mu is not None else 0.0
        return Decision(
            ts_ms=ts_ms,
            observed=x,
            expected=mu,
            sd=sc.sd,
            surprise_up=sc.s_up,
            surprise_down=sc.s_dn,
            evidence_up=self.ev_up,
            evidence_down=self.ev_dn,
            direction=self.direction,
            opened=opened,
            resolved=resolved,
            severity=severity,
            buckets_in_alert=self.in_alert if self.direction else 0,
            tier=sc.tier,
            lower=None if mu is None else (max(lo, 0.0) if self.integral else lo),
            upper=None if mu is None else mu + half,
        )

    def _learn_bucket(self, ts_ms: int, x: float, sc: _Scored, opened: bool) -> None:
        """Learn the bucket: residual autocorrelation, calibration, then the baseline."""
        cfg = self.config
        if sc.mu is not None and sc.sd is not None and (self.direction == 0 or cfg.alert_dev_weight > 0.0):
            # Residual autocorrelation, like the deviation, is not learned from an alert:
            # a sustained shift would look like strongly correlated noise.
            z = min(max((x - sc.mu) / max(sc.sd, 1e-9), -3.0), 3.0)
            a = cfg.dev_alpha * (cfg.alert_dev_weight if self.direction != 0 else 1.0)
            self.ac[1] += a * (z * self.ac[0] - self.ac[1])
            self.ac[2] += a * (z * z - self.ac[2])
            self.ac[0] = z
        if sc.mu is not None and (
            self.direction == 0 or cfg.calib_learn == "all" or (opened and cfg.calib_learn == "open")
        ):
            self._learn_calibration(sc.raw_up, sc.raw_dn)
        suspicious = self.direction != 0 or max(sc.s_up, sc.s_dn) >= cfg.guard_surprise
        if self.direction != 0:
            dev_weight = cfg.alert_dev_weight  # an alert's residuals are the shift, not noise
        elif suspicious and cfg.dev_guard:
            dev_weight = cfg.anomaly_learn_weight
        else:
            dev_weight = 1.0
        # In a key's first days (only a key with a prior, promoted from the pool, alerts then),
        # slots still warming up learn the detector's own alert at the reduced weight: not
        # merely surprising buckets (against the level a daily profile is surprising), and not
        # later (a weekly slot warms up for two weeks, in which an alert is mostly the weekly
        # pattern it is there to learn: NAB nyc_taxi 90.5 -> 60.4 with it).
        young = self.first_ts_ms is None or ts_ms - self.first_ts_ms < cfg.warmup_s * 1000
        warm = cfg.warmup_slot_weight and self.direction != 0 and young
        warm_weight = cfg.anomaly_learn_weight if warm else 1.0
        self._learn(x, sc.ws, sc.ds, cfg.anomaly_learn_weight if suspicious else 1.0, dev_weight, warm_weight, sc.mu)

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
        return lag1_rho(self.ac)

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

    def rebaseline(self) -> float:
        """Re-learn the baseline at the level of the open alert (NEW_NORMAL).

        Scales every slot mean and the level by observed/expected over the
        alert, closes the alert and returns the ratio used.
        """
        if self.alert_exp <= 0.0:
            ratio = 1.0
        else:
            ratio = max(self.alert_obs, 0.0) / self.alert_exp
        self.scale_baseline(ratio)
        self._close()
        self.cooldown = 0
        return ratio

    # ---------------------------------------------------------------- persist
    def snapshot(self) -> dict[str, Any]:
        """JSON-safe, fixed-size state (config not included; ``detector_state.py``)."""
        return detector_state.snapshot(self)

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], config: DetectorConfig | None = None) -> DemandDetector:
        """Restore a detector from :meth:`snapshot` output (same config required)."""
        return detector_state.restore(cls(config), data)
