"""Configuration and per-bucket decision of the demand-shift detector.

:class:`DetectorConfig` holds every parameter (the defaults are the single
configuration benchmarked on NAB, ``touchpoint_tools/bench/nab_score.py``); :class:`Decision`
is what :meth:`streams.demand.detector.DemandDetector.update` returns for one
bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .buckets import DAY_S, WEEK_S

__all__ = ["DetectorConfig", "Decision", "seasonal_slot_s"]


@dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters; defaults are the single configuration benchmarked on NAB.

    bucket_s: bucket size in seconds (300).
    tz: IANA zone whose wall clock defines the seasonal slots ("UTC").
    max_week_slots: cap on time-of-week slots (336 = 30-min slots); the slot
        is the smallest divisor of a day >= max(bucket_s, week / max_week_slots).
    season_alpha: EWMA weight of one season (one week / one day) in slot means (0.25).
    level_alpha: EWMA weight per bucket of the level tier (0.1).
    dev_alpha: EWMA weight per bucket of the relative deviation (0.02).
    init_rdev: relative deviation assumed before any residual is seen (0.1).
    min_slot_seasons: seasons of history before a slot tier is used (2).
    min_level_obs: observations before the level tier is used without a prior (4).
    prior_weight: buckets' worth of weight given to a prior expected value (8).
    k: CUSUM allowance, in -log10 p units per bucket (1.0).
    h: CUSUM threshold that opens an alert (5.5).
    decay: CUSUM forgetting factor per bucket (0.9).
    stay_surprise: per-bucket surprise that keeps an alert open (1.0, hysteresis).
    resolve_buckets: consecutive normal buckets that resolve an alert (6).
    cooldown_buckets: buckets after a resolution with no new alert (12).
    min_excess: volume floor, absolute excess of the evidence run (5.0 events).
    min_rel_change: volume floor, excess relative to expected over the run (0.2).
    clip_sd: inputs are clipped to mu +- clip_sd sd before learning (3.0).
    guard_surprise: buckets at least this surprising learn at reduced weight (3.0).
    anomaly_learn_weight: learning weight of ready slots inside or near an alert (0.2).
    warmup_slot_weight: in a key's first ``warmup_s`` (only a key with a prior
        alerts then), slots still warming up (fewer than ``min_slot_seasons``)
        learn a bucket inside the detector's alert at ``anomaly_learn_weight``
        too, from its expected value when empty (True); False: a plain running mean,
        which learned a surge in a promoted key's first days as its time-of-day
        profile. Not later: an alert in a key's first two weeks is mostly the
        weekly pattern the weekly slots are there to learn (NAB nyc_taxi
        90.5 -> 60.4 with it).
    max_surprise: cap on per-bucket surprise after calibration (30.0).
    calib_window: decay window, in buckets, of the surprise calibration counts (2000).
    calib_prior: buckets' worth of the theoretical tail 10^-s mixed into the
        empirical surprise tail (20).
    calib: use calibrated surprise (True); calib_run: also calibrate the
        run-sum surprise (False: it lost real windows on NAB).
    run_min_buckets: buckets an evidence run needs before its summed count is
        tested on its own (2; a single bucket already went through the CUSUM).
    run_autocorr: inflate the run-sum variance by the AR(1) factor of the
        learned lag-1 residual correlation (True).
    severity_cumulative: severity from observed/expected summed over the
        alert rather than the current bucket (True).
    tier_rule: "fit" lets an established weekly slot that fits at least as
        well as the daily tier speak; "least": the less surprised tier speaks.
    fit_min_seasons: seasons a weekly slot needs for the "fit" rule (2).
    dev_guard: learn the deviation at the reduced weight after a surprising
        bucket outside an alert (False).
    count_model: "nb" (integer counts: negative binomial, var = mu + a mu^2,
        with the overdispersion ``a`` learned per tier by moments, so Poisson
        noise is counted once) or "rdev" (the old max(mu, (1.25 rdev mu)^2)).
    alert_dev_weight: learning weight of the deviation (relative deviation,
        overdispersion, residual autocorrelation) for buckets inside an open
        alert (0.0: an alert's residuals are the shift, not noise).
    run_rho_frozen: the run-sum test uses the residual autocorrelation learned
        before the run started (True), so a shift does not inflate its own
        run variance.
    fit_by_od: for counts ("nb"), the "fit" rule compares the tiers'
        overdispersion instead of their relative deviation (True).
    calib_learn: which buckets teach the surprise calibration: "all" (every
        bucket, alerts included: a routine spike that opened an alert once is
        learned as routine), "open" (outside alerts plus the opening bucket),
        "outside" (outside alerts only, the old rule).
    evidence: what opens an alert: "cusum" (CUSUM of calibrated surprise, the
        run-sum test), "likelihood" (anomaly likelihood, below) or "auto"
        (integer counts: cusum, whose exact count tails are calibrated from
        the first buckets; other series: likelihood).
    run_sum: which series may open on the run-sum test: "counts" (integer
        counts only: on heavy-tailed non-count series it fired on every
        routine spike), "all" or "off".
    volume_floor: "counts": ``min_excess``/``min_rel_change`` apply to integer
        counts only (they are event volumes; on CPU % or temperatures an
        absolute 5 means nothing); "all": to every series.
    level_tier / level_margin: "fit_other": for non-count series, the EWMA
        level replaces the seasonal slot tiers once its learned relative
        deviation times ``level_margin`` (1.5) is below theirs (a series
        without seasonality: CPU %, temperatures; its week-old slots would
        otherwise carry old incidents forward); "fit": for every series (it
        weakens sparse counts: a 3/h key at 0 is only mildly surprising
        against a level that follows it down); "fallback": the level speaks
        only before any slot is ready.
    novelty_block_s: the likelihood only speaks when the short-term mean
        surprise exceeds its own peak over the last one to two blocks of
        ``novelty_block_s`` seconds of event time (43200: a burst that already
        happened in the last 12-24 h, such as a cron job every 2 h, is not
        news; 0 = off).
    warmup_s: a key without a ``prior`` opens no alert before it has this much
        event time of history (172800 = two days: the daily tier needs two
        days, and the level alone cannot tell a daily pattern from a shift; a
        key promoted from the pool with its pooled level as prior is exempt).
    open_on_excess: an alert opens only on a bucket that itself moved in the
        alert's direction (True): the run-sum test used to open a "surge" on
        the 0 that followed a spike of 20.
    lik_cap / lik_alpha / lik_window / lik_min_n / lik_min_sd / lik_h: anomaly
        likelihood (Numenta HTM style): the raw surprise per direction, capped
        at ``lik_cap`` (10), is averaged by an EWMA of weight ``lik_alpha``
        (0.2, ~10 buckets); the mean and variance of that short-term average
        over the key's history (EWMA window ``lik_window`` = 8000 buckets)
        give a normal tail; ``-log10`` of it must reach ``lik_h`` (4) to open.
        It speaks after ``lik_min_n`` (300) buckets; sd floored at ``lik_min_sd``.
    daily_novelty_days / daily_novelty_spread / daily_novelty_margin: the
        likelihood is also silent when its short-term mean surprise is at most
        ``daily_novelty_margin`` (1.5) times its peak within
        ``daily_novelty_spread`` time-of-day slots (2: +-1 h with 30-min slots)
        of this time on each of the last ``daily_novelty_days`` days (2; 0 =
        off): a burst at the same time every night is routine (``novelty.py``).
    other_tail: the tail of the surprise for series that are not counts: "normal"
        (the default) or "laplace" (the distribution whose mean absolute deviation
        is the learned scale; heavier-tailed, so a routine spike of a bursty
        metric is less surprising): rejected on NAB (all 42 -2.8, AWS -3.7).
    lik_input: what the likelihood averages: "raw" surprise (the default) or the
        "calibrated" one: rejected on NAB (all 42 -8.0).
    resolve_rule: "net": an alert resolves once its normal buckets outnumber
        its still-surprising ones by ``resolve_buckets`` (a surprising bucket
        counts one back); "run": ``resolve_buckets`` consecutive normal buckets.
    """

    bucket_s: int = 300
    tz: str = "UTC"
    max_week_slots: int = 336
    season_alpha: float = 0.25
    level_alpha: float = 0.1
    dev_alpha: float = 0.02
    init_rdev: float = 0.1
    min_slot_seasons: int = 2
    min_level_obs: int = 4
    prior_weight: float = 8.0
    k: float = 1.0
    h: float = 5.5
    decay: float = 0.9
    stay_surprise: float = 1.0
    resolve_buckets: int = 6
    cooldown_buckets: int = 12
    min_excess: float = 5.0
    min_rel_change: float = 0.2
    clip_sd: float = 3.0
    guard_surprise: float = 3.0
    anomaly_learn_weight: float = 0.2
    warmup_slot_weight: bool = True
    max_surprise: float = 30.0
    calib_window: int = 2000
    calib_prior: float = 20.0
    calib: bool = True
    calib_run: bool = False
    run_min_buckets: int = 2
    run_autocorr: bool = True
    severity_cumulative: bool = True
    tier_rule: str = "fit"
    fit_min_seasons: int = 2
    dev_guard: bool = False
    count_model: str = "nb"
    alert_dev_weight: float = 0.0
    run_rho_frozen: bool = True
    fit_by_od: bool = True
    resolve_rule: str = "net"
    calib_learn: str = "all"
    evidence: str = "auto"
    run_sum: str = "counts"
    volume_floor: str = "counts"
    level_tier: str = "fit_other"
    level_margin: float = 1.5
    novelty_block_s: float = 43200.0
    warmup_s: float = 172800.0
    open_on_excess: bool = True
    lik_cap: float = 10.0
    lik_alpha: float = 0.2
    lik_window: int = 8000
    lik_h: float = 4.0
    lik_min_n: int = 300
    lik_min_sd: float = 0.1
    daily_novelty_days: int = 2
    daily_novelty_spread: int = 2
    daily_novelty_margin: float = 1.5
    other_tail: str = "normal"
    lik_input: str = "raw"

    def __post_init__(self) -> None:
        if self.bucket_s <= 0:
            raise ValueError("bucket_s must be positive")
        if not 0.0 < self.season_alpha <= 1.0 or not 0.0 < self.level_alpha <= 1.0:
            raise ValueError("alphas must be in (0, 1]")
        if self.h <= 0 or self.resolve_buckets < 1 or self.cooldown_buckets < 0:
            raise ValueError("h > 0, resolve_buckets >= 1, cooldown_buckets >= 0 required")


@dataclass(frozen=True)
class Decision:
    """What the detector concluded about one bucket.

    expected / sd: the baseline and its predictive standard deviation for this
        bucket, computed before the bucket is seen (None before any history).
    lower / upper: the 95% band of the bucket, expected -+ 1.96 sd (counts:
        never below 0), also computed before the bucket is seen.
    direction: +1 surge / -1 collapse while an alert is open, else 0.
    opened / resolved: this bucket opened / resolved an alert.
    severity: 1-4 from the observed/expected ratio while alerting, else 0.
    """

    ts_ms: int
    observed: float
    expected: float | None
    sd: float | None
    surprise_up: float
    surprise_down: float
    evidence_up: float
    evidence_down: float
    direction: int
    opened: bool
    resolved: bool
    severity: int
    buckets_in_alert: int
    tier: str
    lower: float | None = None
    upper: float | None = None

    @property
    def alerting(self) -> bool:
        """True while an alert is open (including the bucket that opened it)."""
        return self.direction != 0


def seasonal_slot_s(bucket_s: int, max_week_slots: int) -> int:
    """Seasonal slot length: smallest divisor of a day >= max(bucket, week/max_slots)."""
    want = max(bucket_s, -(-WEEK_S // max_week_slots))
    if want >= DAY_S:
        return DAY_S
    for s in range(want, DAY_S + 1):
        if DAY_S % s == 0:
            return s
    return DAY_S  # pragma: no cover
