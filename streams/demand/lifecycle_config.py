"""Alert lifecycle vocabulary: the states, the lifecycle's parameters and the record of a transition
(the rules themselves are in ``lifecycle.py``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["OPEN", "ESCALATE", "RESOLVED", "NEW_NORMAL", "LifecycleConfig", "AlertRecord"]

OPEN = "OPEN"
ESCALATE = "ESCALATE"
RESOLVED = "RESOLVED"
NEW_NORMAL = "NEW_NORMAL"


@dataclass(frozen=True)
class LifecycleConfig:
    """Lifecycle parameters (in buckets; the stage derives them from durations).

    new_normal_buckets: a shift still held after this many buckets is the new normal
        (864 = three days of 5-min buckets).
    recent_buckets: time constant of the "last day" level used for NEW_NORMAL (288).
    settle_buckets: an alert's first ``settle_buckets`` buckets refine its severity without an
        ESCALATE record (2).
    back_evidence: log-likelihood evidence that demand is back at its baseline which resolves
        an alert (None: ``ln(20 * new_normal_buckets)``, so a shift that holds is rarely
        resolved by noise before it becomes the new normal).
    min_excess: volume rule, in the measure's units: an alert is published once
        ``|sum(observed - expected)|`` since it opened reaches this (0 = at once).
    slow_buckets, slow_threshold, slow_min_rel, slow_warmup: the sustained-shift test, which
        opens an alert the detector's per-bucket CUSUM misses (a -40 % drop on a key whose
        buckets scatter by 20 %, a ramp): an EWMA (time constant ``slow_buckets``, a day) of
        the detector's standardised residuals, alerting beyond ``slow_threshold`` of
        its own standard deviation (learned: the residuals' variance and lag-1 correlation
        outside alerts) when the level moved by at least ``slow_min_rel`` and after
        ``slow_warmup`` buckets of learning (two weeks). 0 buckets = off. A second EWMA of
        ``fast_buckets`` (six hours) alerts beyond ``fast_threshold`` (3.5) sd: quicker on
        clear drops the per-bucket test sees too weakly.
    judge: "baseline" = everything above (the live stage's choice); "detector" (the default, what
        ``detect --csv`` and the NAB scores were tuned with) = the earlier rules: the detector's
        OPEN and RESOLVED are the alert's, NEW_NORMAL after ``new_normal_buckets`` re-baselines
        with the detector's own ratio; no frozen baseline, volume rule or sustained-shift test.
    min_base: the baseline summed since OPEN must reach this too before an alert is published
        (the stage sets it to ``min_excess`` for units and revenue: lumpy sums of a few orders;
        a surge of them from almost nothing is already an orders alert).
    alert_tiers: detector tiers whose judgement may open an alert (seasonal ones, and the pooled
        prior of a promoted key: a key's first two days, judged by its running level, raise nothing).
    prior_collapses: whether a collapse judged against the pooled prior may open (False: only
        surges do). A key promoted from the long tail rose to get there, and the level its prior
        tier learned since is that rise; demand falling back to where it came from (a sanitizer
        product after the surge) is no collapse a planner acts on. Its own seasonal tiers (two
        days of its history) judge collapses.
    publish_buckets: an alert not published within this many buckets of its OPEN is dropped
        silently (None of its records was emitted; 0 = ``recent_buckets``, a day): a shift that
        takes longer than a day to move ``min_excess`` is not one a planner acts on, and against
        a sparse baseline a single odd bucket would otherwise keep an alert open for days until
        the baseline's own error added up to the volume rule. The volume rule also leaves out the
        alert's largest single bucket: one big order or one bot burst is not a shift.
    lead_surprise: the volume rule counts, besides the buckets since OPEN, the streak of buckets
        just before it that were each at least this surprising (1.0: a 1-in-10 bucket, the
        surprise that keeps an alert open) in the alert's direction: the evidence the detector
        needed to open is part of the shift (0 = since OPEN only). The records still report the
        excess since OPEN.
    collapse_ratio: the halving test, a second evidence path for collapses of busy counts (0 = off;
        the stage sets 0.5): outside alerts, a CUSUM of the log-likelihood ratio "the level is
        ``collapse_ratio`` x the detector's baseline" against "at the baseline" (Gaussian, the
        detector's predictive variance; only buckets expecting 50 or more, where the detector's
        own tails are normal) opens a collapse at the resolution's threshold ``back_threshold``
        (the evidence that ends a shift opens one), on a bucket below the baseline, after the
        sustained-shift test's ``slow_warmup`` (two weeks of learning). The detector's
        per-bucket CUSUM of calibrated surprise needs 4-8 hours for a -50 % on a key whose hours
        scatter by 17 %; a halving of demand is what a planner acts on. Buckets expecting fewer
        than 50 weigh the exact negative-binomial ratio instead, each at most a quarter of the
        threshold (four buckets at least, as for resolving).
    learning_collapse_ratio: the same test in a key's first two weeks (0 = silent then; the stage
        sets 0.2), on buckets a seasonal tier judged (two days of history). A baseline learned
        from a few days misses a weekend's -25 to -40 %: the evidence for "a fifth" gathers only
        below about half of the baseline (the halving's below ~72 %), so a weekend does not open
        it, and a category losing 70 % in a key's first week (the demo's travel) does, within
        hours, not after two weeks.
    """

    new_normal_buckets: int = 864
    recent_buckets: int = 288
    settle_buckets: int = 2
    back_evidence: float | None = None
    min_excess: float = 0.0
    slow_buckets: int = 288
    slow_threshold: float = 3.0
    slow_min_rel: float = 0.2
    slow_warmup: int = 4032
    fast_buckets: int = 72
    fast_threshold: float = 3.5
    alert_tiers: tuple[str, ...] = ("week", "day", "prior")
    prior_collapses: bool = False
    min_base: float = 0.0
    publish_buckets: int = 0
    publish_z: float = 0.0
    week_rel: float = 0.0
    judge: str = "detector"
    lead_surprise: float = 1.0
    collapse_ratio: float = 0.0
    learning_collapse_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.new_normal_buckets < 2 or self.recent_buckets < 1:
            raise ValueError("new_normal_buckets must be >= 2, recent_buckets >= 1")
        if self.settle_buckets < 1:
            raise ValueError("settle_buckets must be >= 1")
        if self.min_excess < 0:
            raise ValueError("min_excess must be >= 0")
        if not 0.0 <= self.collapse_ratio < 1.0 or not 0.0 <= self.learning_collapse_ratio < 1.0:
            raise ValueError("collapse_ratio and learning_collapse_ratio must be in [0, 1)")
        if self.judge not in ("baseline", "detector"):
            raise ValueError("judge must be 'baseline' or 'detector'")

    @property
    def publish_within(self) -> int:
        return self.publish_buckets or self.recent_buckets

    @property
    def back_threshold(self) -> float:
        if self.back_evidence is not None:
            return self.back_evidence
        return math.log(20.0 * self.new_normal_buckets)


@dataclass(frozen=True)
class AlertRecord:
    """One alert transition, ready to serialise (``to_dict``)."""

    alert_id: str
    key: str
    measure: str
    dimension: str
    state: str
    direction: str
    severity: int
    observed: float
    expected: float | None
    excess: float
    ratio: float
    bucket_start: str
    opened_at: str
    buckets_open: int
    surprise: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the record."""
        return asdict(self)
