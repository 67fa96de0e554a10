"""Alert lifecycle per key: OPEN -> ESCALATE* -> RESOLVED | NEW_NORMAL.

:class:`AlertLifecycle` turns the detector's per-bucket :class:`Decision` into
alert records (emit transitions, not a flag per bucket). :class:`DemandMonitor`
wires one detector and one lifecycle together for a key and applies the
NEW_NORMAL re-baseline. Both keep fixed-size, JSON-safe state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .buckets import iso_utc
from .detector import Decision, DemandDetector, DetectorConfig

__all__ = [
    "OPEN",
    "ESCALATE",
    "RESOLVED",
    "NEW_NORMAL",
    "LifecycleConfig",
    "AlertRecord",
    "AlertLifecycle",
    "DemandMonitor",
]

OPEN = "OPEN"
ESCALATE = "ESCALATE"
RESOLVED = "RESOLVED"
NEW_NORMAL = "NEW_NORMAL"


@dataclass(frozen=True)
class LifecycleConfig:
    """Lifecycle parameters.

    new_normal_buckets: an alert still open after this many buckets is
        declared the new normal and the baseline is re-learned (288 = one day
        of 5-min buckets).
    settle_buckets: an alert's first ``settle_buckets`` buckets (the opening
        one included) refine its severity without an ESCALATE record (2: the
        bucket right after OPEN does not page again); a later rise of the
        severity above the one already held escalates as before.
    """

    new_normal_buckets: int = 288
    settle_buckets: int = 2

    def __post_init__(self) -> None:
        if self.new_normal_buckets < 2:
            raise ValueError("new_normal_buckets must be >= 2")
        if self.settle_buckets < 1:
            raise ValueError("settle_buckets must be >= 1")


@dataclass(frozen=True)
class AlertRecord:
    """One alert transition, ready to serialise (``to_dict``)."""

    alert_id: str
    key: str
    dimension: str
    state: str
    direction: str
    severity: int
    observed: float
    expected: float | None
    excess: float
    bucket_start: str
    opened_at: str
    buckets_open: int
    surprise: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the record."""
        return asdict(self)


class AlertLifecycle:
    """Alert state machine for one key (fixed-size state)."""

    def __init__(self, key: str, dimension: str = "", config: LifecycleConfig | None = None) -> None:
        self.key = key
        self.dimension = dimension
        self.config = config or LifecycleConfig()
        self.alert_id: str | None = None
        self.direction = 0
        self.opened_ms = 0
        self.severity = 0
        self.excess = 0.0
        self.buckets = 0

    @property
    def active(self) -> bool:
        """True while an alert is open."""
        return self.alert_id is not None

    def observe(self, d: Decision) -> list[AlertRecord]:
        """Consume one bucket's decision; return the transitions it caused."""
        out: list[AlertRecord] = []
        excess = d.observed - d.expected if d.expected is not None else 0.0
        if d.opened:
            self.direction = d.direction
            self.opened_ms = d.ts_ms
            self.alert_id = f"{self.key}:{d.ts_ms}:{'up' if d.direction > 0 else 'down'}"
            self.severity = d.severity
            self.excess = excess
            self.buckets = 1
            out.append(self._record(OPEN, d))
            return out
        if not self.active:
            return out
        self.buckets += 1
        if d.resolved:
            out.append(self._record(RESOLVED, d))
            self._reset()
            return out
        self.excess += excess
        if d.severity > self.severity:
            # While the alert settles, its severity (observed/expected over one or two
            # buckets) is still an estimate: a rise updates it without a new page.
            self.severity = d.severity
            if self.buckets > self.config.settle_buckets:
                out.append(self._record(ESCALATE, d))
        if self.buckets >= self.config.new_normal_buckets:
            out.append(self._record(NEW_NORMAL, d))
            self._reset()
        return out

    def _record(self, state: str, d: Decision) -> AlertRecord:
        assert self.alert_id is not None
        return AlertRecord(
            alert_id=self.alert_id,
            key=self.key,
            dimension=self.dimension,
            state=state,
            direction="surge" if self.direction > 0 else "collapse",
            severity=self.severity,
            observed=d.observed,
            expected=d.expected,
            excess=self.excess,
            bucket_start=iso_utc(d.ts_ms),
            opened_at=iso_utc(self.opened_ms),
            buckets_open=self.buckets,
            surprise=d.surprise_up if self.direction > 0 else d.surprise_down,
        )

    def _reset(self) -> None:
        self.alert_id = None
        self.direction = 0
        self.opened_ms = 0
        self.severity = 0
        self.excess = 0.0
        self.buckets = 0

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "alert_id": self.alert_id,
            "direction": self.direction,
            "opened_ms": self.opened_ms,
            "severity": self.severity,
            "excess": self.excess,
            "buckets": self.buckets,
        }

    @classmethod
    def from_snapshot(
        cls, data: dict[str, Any], key: str, dimension: str = "", config: LifecycleConfig | None = None
    ) -> AlertLifecycle:
        """Restore from :meth:`snapshot` output."""
        lc = cls(key, dimension, config)
        lc.alert_id = data["alert_id"]
        lc.direction = int(data["direction"])
        lc.opened_ms = int(data["opened_ms"])
        lc.severity = int(data["severity"])
        lc.excess = float(data["excess"])
        lc.buckets = int(data["buckets"])
        return lc


class DemandMonitor:
    """Detector + lifecycle for one key: ``update(ts_ms, count) -> (Decision, records)``."""

    def __init__(
        self,
        key: str,
        dimension: str = "",
        detector_config: DetectorConfig | None = None,
        lifecycle_config: LifecycleConfig | None = None,
    ) -> None:
        self.detector = DemandDetector(detector_config)
        self.lifecycle = AlertLifecycle(key, dimension, lifecycle_config)

    def update(self, ts_ms: int, count: float, prior: float | None = None) -> tuple[Decision, list[AlertRecord]]:
        """Process one closed bucket; re-baselines the detector on NEW_NORMAL."""
        decision = self.detector.update(ts_ms, count, prior)
        records = self.lifecycle.observe(decision)
        if any(r.state == NEW_NORMAL for r in records):
            self.detector.rebaseline()
        return decision, records

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state of both parts."""
        return {"detector": self.detector.snapshot(), "lifecycle": self.lifecycle.snapshot()}

    @classmethod
    def from_snapshot(
        cls,
        data: dict[str, Any],
        key: str,
        dimension: str = "",
        detector_config: DetectorConfig | None = None,
        lifecycle_config: LifecycleConfig | None = None,
    ) -> DemandMonitor:
        """Restore from :meth:`snapshot` output (same configs required)."""
        mon = cls(key, dimension, detector_config, lifecycle_config)
        mon.detector = DemandDetector.from_snapshot(data["detector"], detector_config)
        mon.lifecycle = AlertLifecycle.from_snapshot(data["lifecycle"], key, dimension, lifecycle_config)
        return mon
