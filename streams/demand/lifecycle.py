"""Alert lifecycle per series: OPEN -> ESCALATE* -> RESOLVED | NEW_NORMAL.

The detector decides when a shift *starts* (its OPEN); the lifecycle decides what the shift
*became*, against the baseline frozen when it opened:

* **RESOLVED** when demand is back at that baseline: a CUSUM of the log-likelihood ratio
  "baseline" vs "the alert's level" (observed/expected summed over the alert), dispersion-aware,
  reaches ``back_evidence`` (natural-log units). High volumes resolve within a bucket or two of
  the end, sparse keys need more buckets, a noisy bucket does not end a shift.
* **NEW_NORMAL** once the shift has held ``new_normal_buckets`` (three days live, whatever the
  bucket size) and its last day still looks like the shifted level, not the baseline: a multi-day
  judgement. A 36-hour surge that ends is RESOLVED, not a new normal. Then the detector's
  baseline is re-learned at the level of the last day. A gradual ramp opens when its cumulative
  deviation is clear and becomes the new normal the same way.
* Whatever the detector does meanwhile (it may close its own alert, reopen, or see the return
  to baseline as a shift the other way against a baseline that learned part of the shift) does
  not open a second alert while one is open; on RESOLVED the detector's baseline is scaled back
  to the frozen one, so the end of a surge is not reported as a collapse.
* **Silent shifts**: an alert dropped unpublished (below the volume rule) leaves the detector's
  baseline where it learned it. For the three days it would have needed to become a new normal,
  an alert the other way is judged against the level the silent shift rose or fell from, when
  that lies further in its direction: demand back where it was is no collapse (or surge).
  And a collapse judged against a promoted key's pooled prior (which learned the rise that
  promoted it) does not open (``LifecycleConfig.prior_collapses``); a key promoted mid-surge is
  remembered as having risen from its pre-rise pooled level (``remember_rise``, set by the stage)
  for the same three days, so its own tiers, which learned the surge, do not call the fall back
  a collapse either.
* **Opening tests** besides the detector's OPEN (:mod:`~streams.demand.lifecycle_opening`): the
  sustained-shift test, the week-on-week test and the halving test (on counts, outside alerts, a
  CUSUM of the evidence that demand fell to half its baseline; in a key's first two weeks, to a
  fifth) open a shift the detector's per-bucket evidence is slow to see.
* **Volume rule**: an alert is published (its OPEN record emitted) only once its excess in its
  own direction, ``observed - expected`` summed since it opened, reaches ``min_excess`` in the
  measure's own units and its level (observed/expected since OPEN) moved by at least 20 %; a
  shift that never moves that much stays silent end to end. The caller may add a condition
  (``corroborated``: the stage's corroboration of units and revenue, :mod:`~streams.demand.corroboration`).

:class:`~streams.demand.monitor.DemandMonitor` wires one detector and one lifecycle together. State is fixed-size and
JSON-safe; the frozen baseline (one expected value per seasonal slot of a week) exists only
while an alert is open.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .buckets import iso_utc
from .detector import Decision
from .lifecycle_config import ESCALATE, NEW_NORMAL, OPEN, RESOLVED, AlertRecord, LifecycleConfig
from .lifecycle_evidence import judge_against_echo, remember_rise, remember_silent, track_lead
from .lifecycle_evidence import llr as _llr
from .lifecycle_evidence import severity as _severity
from .lifecycle_evidence import variance as _variance
from .lifecycle_opening import OpeningTests

__all__ = [
    "OPEN",
    "ESCALATE",
    "RESOLVED",
    "NEW_NORMAL",
    "LifecycleConfig",
    "AlertRecord",
    "AlertLifecycle",
]


class AlertLifecycle(OpeningTests):
    """Alert state machine for one series (fixed-size state; a frozen baseline while open)."""

    def __init__(self, key: str, dimension: str = "", config: LifecycleConfig | None = None, measure: str = "") -> None:
        self.key = key
        self.dimension = dimension
        self.measure = measure
        self.config = config or LifecycleConfig()
        self._reset()
        # Sustained-shift test: [EWMA of residuals z, last residual, E[r r-1], E[r^2], buckets
        # learned, EWMA observed, EWMA expected].
        self.slow = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        # Week-on-week test (ramps): [buckets into the day, observed and expected sums of the day so
        # far, then the expected sums of up to 7 completed days, oldest first].
        self.days: list[float] = [0.0, 0.0, 0.0]
        self.week_scale: float | None = None
        # Lead-in per direction (up, down): [observed, expected, largest excess, variance, buckets]
        # summed over the streak of surprising buckets that moved that way just before this one.
        self.lead = [[0.0] * 5, [0.0] * 5]
        # The last silent shift (dropped unpublished): [direction, buckets left to remember it,
        # mean level per bucket of its frozen baseline]; empty when there is none.
        self.echo: list[float] = []
        # The halving test (``LifecycleConfig.collapse_ratio``): CUSUM of the evidence that demand
        # fell to half its baseline, outside alerts.
        self.halved = 0.0
        # Buckets since the last alert (published or silent) ended, or since the key's first.
        self.calm = 0.0

    @property
    def active(self) -> bool:
        """True while an alert is open (published or not yet)."""
        return self.alert_id is not None

    def _reset(self) -> None:
        self.alert_id: str | None = None
        self.direction = 0
        self.opened_ms = 0
        self.severity = 0
        self.buckets = 0
        self.published = False
        self.sx = self.se = 0.0          # observed and frozen-baseline sums over the alert
        self.top = 0.0                   # largest single-bucket excess in the alert's direction
        self.sv = 0.0                    # predictive variance at the baseline, summed over the alert
        self.back = 0.0                  # CUSUM of evidence that demand is back at the baseline
        self.recent = [0.0, 0.0, 0.0, 0.0]  # EWMA over ~a day: observed, baseline, detector expected, llr
        self.ref: list[float] | None = None  # frozen expected per seasonal slot, from opened_ms
        self.ref_step_ms = 0
        self.rescale: float | None = None  # set on RESOLVED / NEW_NORMAL: scale the detector's baseline
        self.plain_rebaseline = False  # judge="detector": NEW_NORMAL re-baselines with the detector's ratio
        self.pre = [0.0] * 5  # the lead-in of the alert's direction when it opened (volume rule only)

    def remember_rise(self, level: float) -> None:
        """The key was just promoted from the long tail, having risen from ``level`` per bucket
        (the stage's pre-rise pooled level): for the next ``new_normal_buckets`` a collapse is
        judged against that level when it lies lower than the collapse's own baseline (a key
        promoted mid-surge, whose tiers learned the surge, falling back is no collapse)."""
        self.echo = remember_rise(self.echo, level, self.config.new_normal_buckets)
        # Its first days' slots learned the rise it was promoted in: the first weeks' halving
        # test waits twice its usual three days (a product back at its level two days after the
        # sanitizer surge read as -60 to -85 %: crisis replay seeds 3 and 4).
        self.calm = -float(self.config.new_normal_buckets)

    # ------------------------------------------------------------------ transitions
    def observe(self, d: Decision, reference: Callable[[int], list[float] | None] | None = None,
                step_ms: int = 0, integral: bool = True,
                corroborated: Callable[[int], bool] | None = None) -> list[AlertRecord]:
        """Consume one bucket's decision; return the transitions it caused.

        ``reference(opened_ms)`` gives the baseline frozen at OPEN: the expected value of each
        seasonal slot (``step_ms`` long) of the week that starts at the alert's slot.
        ``corroborated(direction)``, when given, must also hold for the alert to be published
        (the stage's corroboration rule for summed measures of a category's keys); until it does,
        the alert stays silent, and it is dropped as any silent alert is after ``publish_within``.
        """
        self.rescale = None
        self.plain_rebaseline = False
        if self.config.judge == "detector":
            return self._observe_detector(d)
        if self.echo:
            self.echo[1] -= 1.0
            if self.echo[1] <= 0.0:
                self.echo = []
        if not self.active:
            self.calm = min(self.calm + 1.0, 1e6)
        halved = self._halving_test(d, integral)
        slow = self._slow_test(d) or self._week_test(d) or halved
        before = track_lead(self.lead, d, integral, self.config.lead_surprise, self.active)
        if not self.active:
            # Only shifts judged against a seasonal baseline (the detector's daily or weekly tier:
            # two days of history), or against the pooled level a key rose from ("prior"), are
            # alerted on: against a key's first hours ("level"), every evening peak is a surge.
            if d.expected is None or not (d.opened or slow) or d.tier not in self.config.alert_tiers:
                return []
            if d.tier == "prior" and (d.direction if d.opened else slow) < 0 and not self.config.prior_collapses:
                # A key judged against the level it rose to since leaving the long tail: falling
                # back is the end of that rise, not a collapse of an established baseline.
                return []
            self._open(d, reference, step_ms, slow)
            self.pre = before[0 if self.direction > 0 else 1]
        # While an alert is open, the detector's own OPEN/RESOLVED (either direction) is absorbed.
        self.buckets += 1
        e = self._expected(d)
        x = d.observed
        self.sx += x
        self.se += e
        self.top = max(self.top, (x - e) * self.direction)
        ratio = self.sx / self.se if self.se > 0 else (2.0 if x > 0 else 1.0)
        h1 = ratio if (ratio - 1.0) * self.direction > 0 else 1.0 + 0.2 * self.direction  # never test 1 vs 1
        # One bucket weighs at most a quarter of the evidence that resolves: a single odd bucket
        # (counts are heavier-tailed than the Gaussian approximation) never ends a shift.
        cap = self.config.back_threshold / 4.0
        var0 = _variance(d, e, integral)
        self.sv += var0
        llr = max(-cap, min(cap, _llr(x, e, max(h1, 1e-3), var0)))
        self.back = max(0.0, self.back - llr)
        a = max(1.0 / self.config.recent_buckets, 1.0 / self.buckets)
        det_e = d.expected if d.expected is not None else e
        for i, v in enumerate((x, e, det_e, llr)):
            self.recent[i] += a * (v - self.recent[i])
        out: list[AlertRecord] = []
        if not self.published and self._actionable(ratio) and (corroborated is None or corroborated(self.direction)):
            self.published = True
            self.severity = _severity(ratio, self.direction)
            out.append(self._record(OPEN, d, e))
        if not self.published and self.buckets >= self.config.publish_within:
            self.echo = remember_silent(self.echo, self.direction, self.ref, self.buckets, self.config.new_normal_buckets)
            return self._end(RESOLVED, d, e, out)  # never actionable: dropped without a record
        if self.back >= self.config.back_threshold:
            # Back at the baseline: scale the detector back to it if it learned part of the shift.
            self.rescale = self.recent[1] / self.recent[2] if self.recent[2] > 0 else None
            return self._end(RESOLVED, d, e, out)
        if self.buckets >= self.config.new_normal_buckets:
            day_ratio = self.recent[0] / self.recent[1] if self.recent[1] > 0 else ratio
            if self.recent[3] > 0.0 and self._shifted(day_ratio):
                # Held for days and the last day is still a level 20 % or more away: re-learn there.
                self.rescale = self.recent[0] / self.recent[2] if self.recent[2] > 0 else None
                return self._end(NEW_NORMAL, d, e, out)
            # Three days on, the last day is within 20 % of the baseline: no new level, resolved.
            self.rescale = self.recent[1] / self.recent[2] if self.recent[2] > 0 else None
            return self._end(RESOLVED, d, e, out)
        severity = _severity(ratio, self.direction)
        if severity > self.severity:
            self.severity = severity
            if self.published and self.buckets > self.config.settle_buckets and not out:
                out.append(self._record(ESCALATE, d, e))
        return out

    def _actionable(self, ratio: float) -> bool:
        """The volume rule: the shift moved at least ``min_excess`` of the measure in its own
        direction since OPEN, and the level by at least ``slow_min_rel`` (20 %)."""
        px, pe, ptop, pv, pn = self.pre
        moved = (self.sx + px - self.se - pe) * self.direction
        if self.config.min_excess > 0 and self.buckets + pn > 1:
            moved -= max(self.top, ptop, 0.0)  # the largest bucket alone is not a shift
        # Sums of lumpy amounts (units, revenue: a few big orders) are noisier than the count model:
        # their shift must also be clear of the noise the residuals showed outside alerts.
        inflation = max(1.0, self.slow[3])
        clear = moved >= self.config.publish_z * math.sqrt((self.sv + pv) * inflation)
        return (self._shifted(ratio) and clear and moved >= max(self.config.min_excess, 1e-9)
                and self.se >= self.config.min_base)

    def _shifted(self, ratio: float) -> bool:
        """The level is at least ``slow_min_rel`` (20 %) away from the baseline, in the alert's direction."""
        if self.direction > 0:
            return ratio >= 1.0 + self.config.slow_min_rel
        return ratio <= 1.0 / (1.0 + self.config.slow_min_rel)

    def _observe_detector(self, d: Decision) -> list[AlertRecord]:
        """The earlier lifecycle: the detector's OPEN/RESOLVED, NEW_NORMAL after a fixed time."""
        e = d.expected
        if d.opened:
            self._reset()
            self._open(d, None, 0)
            self.severity, self.buckets, self.published = d.severity, 1, True
            self.sx, self.se = d.observed, e or 0.0
            return [self._record(OPEN, d, e)]
        if not self.active:
            return []
        self.buckets += 1
        if d.resolved:
            return self._end(RESOLVED, d, e, [])
        self.sx += d.observed
        self.se += e or 0.0
        out: list[AlertRecord] = []
        if d.severity > self.severity:
            self.severity = d.severity
            if self.buckets > self.config.settle_buckets:
                out.append(self._record(ESCALATE, d, e))
        if self.buckets >= self.config.new_normal_buckets:
            self.plain_rebaseline = True
            return self._end(NEW_NORMAL, d, e, out)
        return out

    def _open(self, d: Decision, reference: Callable[[int], list[float] | None] | None, step_ms: int,
              slow: int = 0) -> None:
        direction = d.direction if d.opened else slow
        self.alert_id = f"{self.key}:{d.ts_ms}:{'up' if direction > 0 else 'down'}"
        if self.measure:
            self.alert_id = f"{self.measure}/{self.alert_id}"
        self.direction = direction
        self.opened_ms = d.ts_ms
        ref = reference(d.ts_ms) if reference is not None else None
        if ref and d.expected is not None:
            # The detector has already learned the opening bucket: its own expectation for it is
            # the causal one. A flat profile (level tier, cold start) moved as a whole; a seasonal
            # one only in the opening slot.
            if max(ref) - min(ref) <= 1e-9 * max(abs(ref[0]), 1.0) and ref[0] > 0:
                ref = [d.expected] * len(ref)
            else:
                ref[0] = d.expected
        if ref and self.week_scale is not None:
            ref = [v * self.week_scale for v in ref]
        self.week_scale = None
        if ref:
            ref, self.echo = judge_against_echo(self.echo, self.direction, ref)
        self.ref = ref
        self.ref_step_ms = step_ms if self.ref else 0

    def _expected(self, d: Decision) -> float:
        if self.ref and self.ref_step_ms > 0:
            start = self.opened_ms - self.opened_ms % self.ref_step_ms
            i = (d.ts_ms - start) // self.ref_step_ms % len(self.ref)
            return max(self.ref[i], 0.0)
        return max(d.expected or 0.0, 0.0)

    def _end(self, state: str, d: Decision, e: float | None, out: list[AlertRecord]) -> list[AlertRecord]:
        if self.published:
            out.append(self._record(state, d, e))
        rescale, plain = self.rescale, self.plain_rebaseline
        self._reset()
        self.rescale, self.plain_rebaseline = rescale, plain
        self.slow[0] = self.slow[7] = 0.0  # the sustained-shift test starts afresh on the (re-learned) baseline
        self.slow[5] = self.slow[6] = 0.0
        self.days = [0.0, 0.0, 0.0]  # a week of clean days before the week-on-week test again
        self.calm = 0.0
        return out

    def _record(self, state: str, d: Decision, e: float | None) -> AlertRecord:
        assert self.alert_id is not None
        return AlertRecord(
            alert_id=self.alert_id,
            key=self.key,
            measure=self.measure,
            dimension=self.dimension,
            state=state,
            direction="surge" if self.direction > 0 else "collapse",
            severity=max(self.severity, 1),
            observed=d.observed,
            expected=e,
            excess=self.sx - self.se,
            ratio=round(self.sx / self.se, 4) if self.se > 0 else 0.0,
            bucket_start=iso_utc(d.ts_ms),
            opened_at=iso_utc(self.opened_ms),
            buckets_open=self.buckets,
            surprise=d.surprise_up if self.direction > 0 else d.surprise_down,
        )

    # ------------------------------------------------------------------ persist
    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state (``ref`` only while an alert is open)."""
        out: dict[str, Any] = {"alert_id": self.alert_id, "slow": list(self.slow), "days": list(self.days)}
        if any(v for lead in self.lead for v in lead):
            out["lead"] = [list(v) for v in self.lead]
        if self.echo:
            out["echo"] = list(self.echo)
        if self.halved:
            out["halved"] = self.halved
        out["calm"] = self.calm
        if self.alert_id is not None:
            out.update(pre=list(self.pre), direction=self.direction, opened_ms=self.opened_ms, severity=self.severity,
                       buckets=self.buckets, published=self.published, sums=[self.sx, self.se], top=self.top, var=self.sv,
                       back=self.back, recent=list(self.recent), ref=self.ref, ref_step_ms=self.ref_step_ms)
        return out

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], key: str, dimension: str = "", config: LifecycleConfig | None = None,
                      measure: str = "") -> AlertLifecycle:
        """Restore from :meth:`snapshot` output; snapshots written before the frozen baseline
        (``excess`` instead of ``sums``) restore an open alert as published, judged from then on
        against the detector's expectation."""
        lc = cls(key, dimension, config, measure)
        if "slow" in data:
            lc.slow = ([float(v) for v in data["slow"]] + [0.0])[:8]
        if "days" in data:
            lc.days = [float(v) for v in data["days"]]
        if "lead" in data:
            lc.lead = [[float(v) for v in lead] for lead in data["lead"]]
        if "echo" in data:
            lc.echo = [float(v) for v in data["echo"]]
        lc.halved = float(data.get("halved", 0.0))
        # Older snapshots: as after a long quiet spell, unless a shift is remembered (its echo).
        lc.calm = float(data.get("calm", 0.0 if lc.echo else 1e6))
        if data.get("alert_id") is None:
            return lc
        lc.alert_id = data["alert_id"]
        lc.direction = int(data["direction"])
        lc.opened_ms = int(data["opened_ms"])
        lc.severity = int(data["severity"])
        lc.buckets = int(data["buckets"])
        lc.published = bool(data.get("published", True))
        if "sums" in data:
            lc.sx, lc.se = (float(v) for v in data["sums"])
        lc.top = float(data.get("top", 0.0))
        lc.pre = [float(v) for v in data.get("pre", [0.0] * 5)]
        lc.sv = float(data.get("var", 0.0))
        lc.back = float(data.get("back", 0.0))
        lc.recent = [float(v) for v in data.get("recent", [0.0, 0.0, 0.0, 0.0])]
        ref = data.get("ref")
        lc.ref = None if ref is None else [float(v) for v in ref]
        lc.ref_step_ms = int(data.get("ref_step_ms", 0))
        return lc


def __getattr__(name: str) -> Any:
    # DemandMonitor lives in monitor.py (it imports this module); kept importable from here.
    if name == "DemandMonitor":
        from .monitor import DemandMonitor

        return DemandMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
