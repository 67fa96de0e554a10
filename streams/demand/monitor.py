"""One series' detector and alert lifecycle wired together: ``update(ts_ms, value) -> (Decision, records)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .detector import Decision, DemandDetector, DetectorConfig
from .lifecycle import AlertLifecycle
from .lifecycle_config import AlertRecord, LifecycleConfig

__all__ = ["DemandMonitor"]


def _scale_baseline(detector: DemandDetector, ratio: float) -> None:
    """Scale the detector's baseline by ``ratio`` through its NEW_NORMAL re-baseline.

    ``DemandDetector.rebaseline()`` scales by observed/expected over its *own* alert, which may
    have closed long before (or learned part of the shift); the lifecycle knows the level to
    re-learn, so it sets those sums to the ratio it wants first.
    """
    ratio = min(max(ratio, 0.01), 100.0)
    detector.alert_obs, detector.alert_exp = ratio, 1.0
    detector.rebaseline()


class DemandMonitor:
    """Detector + lifecycle for one series: ``update(ts_ms, count) -> (Decision, records)``."""

    def __init__(
        self,
        key: str,
        dimension: str = "",
        detector_config: DetectorConfig | None = None,
        lifecycle_config: LifecycleConfig | None = None,
        measure: str = "",
    ) -> None:
        self.detector = DemandDetector(detector_config)
        self.lifecycle = AlertLifecycle(key, dimension, lifecycle_config, measure)

    def _reference(self, prior: float | None) -> Callable[[int], list[float] | None]:
        det = self.detector

        def frozen(opened_ms: int) -> list[float] | None:
            step = det.slot_s * 1000
            start = opened_ms - opened_ms % step
            values = [det.expected(start + i * step, prior) for i in range(det.week_slots)]
            return None if any(v is None for v in values) else [float(v) for v in values]  # type: ignore[arg-type]

        return frozen

    def update(self, ts_ms: int, count: float, prior: float | None = None,
               corroborated: Callable[[int], bool] | None = None) -> tuple[Decision, list[AlertRecord]]:
        """Process one closed bucket; re-baselines the detector on NEW_NORMAL (and scales it back
        to the frozen baseline on RESOLVED). ``corroborated``: see :meth:`AlertLifecycle.observe`."""
        decision = self.detector.update(ts_ms, count, prior)
        lc = self.lifecycle
        records = lc.observe(decision, self._reference(prior), self.detector.slot_s * 1000, self.detector.integral,
                             corroborated)
        if lc.plain_rebaseline:
            self.detector.rebaseline()
            lc.plain_rebaseline = False
        if lc.rescale is not None:
            if not lc.active and (lc.rescale > 0) and (abs(math.log(lc.rescale)) > 0.05 or self.detector.direction != 0):
                _scale_baseline(self.detector, lc.rescale)
            lc.rescale = None
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
        measure: str = "",
    ) -> DemandMonitor:
        """Restore from :meth:`snapshot` output (same configs required)."""
        mon = cls(key, dimension, detector_config, lifecycle_config, measure)
        mon.detector = DemandDetector.from_snapshot(data["detector"], detector_config)
        mon.lifecycle = AlertLifecycle.from_snapshot(data["lifecycle"], key, dimension, lifecycle_config, measure)
        return mon
