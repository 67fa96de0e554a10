"""Parameters of the demand stage (``stage.py``), derived from settings: bucket size, watched
measures, the volume rule, pooling, and the lifecycle's durations per measure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.demand.buckets import DAY_S, WEEK_S
from streams.demand.detector import DetectorConfig
from streams.demand.dimensions import MEASURES
from streams.demand.lifecycle_config import LifecycleConfig
from streams.demand.series import DEFAULT_MIN_EXCESS, parse_min_excess

__all__ = ["SUMMED", "StageConfig"]

#: Measures that sum amounts of orders (lumpy: a few orders carry most of them), not count events.
SUMMED = ("units", "revenue")


@dataclass(frozen=True)
class StageConfig:
    """Parameters of the demand stage, derived from settings.

    The detector's own parameters count in buckets (resolve after 6, cooldown 12); only the
    bucket size and time zone come from settings. The lifecycle's durations are fixed in time
    whatever the bucket size: NEW_NORMAL after ``new_normal_s`` (3 days) of a held shift, the
    "last day" level over ``recent_s``.
    """

    bucket_s: int = 3600
    lateness_s: int = 600
    timezone: str = "UTC"
    worker: str = ""
    measures: tuple[str, ...] = MEASURES  # watched; other measures' partial sums are skipped
    min_excess: tuple[tuple[str, float], ...] = tuple(parse_min_excess(DEFAULT_MIN_EXCESS).items())
    new_normal_s: int = 3 * DAY_S
    recent_s: int = DAY_S
    max_gap_buckets: int = 0  # 0 = one week of buckets
    pool_floor: float = 1.0  # per hour, below which a series is pooled (0 = never pool); x min_excess/12 (see floor)
    pool_release: float = 0.5  # a full key returns to the pool below pool_release x pool_floor
    pool_window_s: int = DAY_S  # time constant of the volume EWMA
    pool_min_s: int = 3600  # a new key is pooled for at least this long (its EWMA is a plain mean)
    # The level a key had before it rose: follows the pooled EWMA down at once, up over this time
    # constant (a rise of hours barely moves it; a key promoted mid-surge remembers where it came from).
    pool_base_s: int = 3 * DAY_S
    max_future_s: int = 0  # horizon: a bucket later than the wall clock plus this is refused (0 = no check)
    # A bucket close hands the event loop back after this much work (DemandStage.process_sliced):
    # the longest the loop is blocked by a close, up to one key's buckets and a GC pass.
    close_slice_s: float = 0.01

    @classmethod
    def from_settings(cls, settings: Any, worker: str = "") -> StageConfig:
        from streams.demand.dimensions import parse_measures

        return cls(bucket_s=settings.demand_bucket_s, lateness_s=settings.demand_lateness_s,
                   timezone=settings.demand_timezone, worker=worker, max_future_s=settings.event_max_future_s,
                   measures=parse_measures(settings.demand_measures),
                   min_excess=tuple(parse_min_excess(settings.demand_min_excess).items()))

    @property
    def size_ms(self) -> int:
        return self.bucket_s * 1000

    @property
    def alert_horizon_ms(self) -> int:
        """Event time within which an open alert ends (NEW_NORMAL, the last day, two buckets)."""
        return (self.new_normal_s + self.recent_s) * 1000 + 2 * self.size_ms

    @property
    def gap_buckets(self) -> int:
        return self.max_gap_buckets or max(1, WEEK_S // self.bucket_s)

    @property
    def pool_alpha(self) -> float:
        """EWMA weight per bucket of the pooled volume."""
        return min(1.0, self.bucket_s / max(self.pool_window_s, 1))

    @property
    def pool_base_alpha(self) -> float:
        """Weight per bucket with which the pre-rise level follows the pooled EWMA upwards."""
        return min(1.0, self.bucket_s / max(self.pool_base_s, 1))

    @property
    def pool_min_buckets(self) -> int:
        """Buckets a key is seen before it can be promoted."""
        return max(1, self.pool_min_s // self.bucket_s)

    def floor_per_bucket(self, measure: str = "") -> float:
        """The pooling floor of a measure per bucket: ``pool_floor`` per hour, in units of a
        twelfth of the measure's volume rule (1 order, 2 units, 125 CNY, 3.3 interest events
        an hour with the defaults; ``pool_floor`` itself when the measure has no volume rule)."""
        unit = dict(self.min_excess).get(measure, 0.0) / 12.0 or 1.0
        return self.pool_floor * unit * self.bucket_s / 3600.0

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(bucket_s=self.bucket_s, tz=self.timezone)

    def lifecycle_config(self, measure: str = "") -> LifecycleConfig:
        return LifecycleConfig(new_normal_buckets=max(2, self.new_normal_s // self.bucket_s),
                               recent_buckets=max(1, self.recent_s // self.bucket_s),
                               min_excess=dict(self.min_excess).get(measure, 0.0),
                               slow_buckets=max(2, DAY_S // self.bucket_s), slow_warmup=max(2, 2 * WEEK_S // self.bucket_s),
                               fast_buckets=max(2, 6 * 3600 // self.bucket_s), judge="baseline",
                               min_base=dict(self.min_excess).get(measure, 0.0) if measure in SUMMED else 0.0,
                               publish_z=3.0 if measure in SUMMED else 0.0, week_rel=0.25,
                               collapse_ratio=0.5, learning_collapse_ratio=0.2)
