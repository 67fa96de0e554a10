"""Event-time bucketing in UTC with allowed lateness, and local time-of-week slots.

Buckets are aligned on the UTC epoch (``bucket_start = ts - ts % size``). The
watermark is the largest event time seen minus the allowed lateness; a bucket
``[s, s + size)`` closes once the watermark reaches ``s + size``. Closed
buckets are emitted for every key seen so far, with zero counts for empty
buckets, so a collapse to 0 is visible downstream. Counts that arrive for an
already closed bucket are returned flagged ``late=True`` (never dropped).

Seasonal slots use the *local* wall clock of a configured IANA zone, so a DST
change does not shift the time-of-week slot of "Monday 09:00".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "BucketConfig",
    "ClosedBucket",
    "BucketAccumulator",
    "bucket_start_ms",
    "local_slot",
    "iso_utc",
]

WEEK_S = 7 * 86400
DAY_S = 86400


@dataclass(frozen=True)
class BucketConfig:
    """Bucketing parameters.

    bucket_s: bucket size in seconds (default 300 = 5 min).
    lateness_s: allowed lateness in seconds behind the max event time (default 600).
    max_gap_buckets: at most this many empty buckets are emitted per key when
        the watermark jumps (bounds work after long idle periods; default 2016 =
        one week of 5-min buckets).
    """

    bucket_s: int = 300
    lateness_s: int = 600
    max_gap_buckets: int = 2016

    def __post_init__(self) -> None:
        if self.bucket_s <= 0:
            raise ValueError("bucket_s must be positive")
        if self.lateness_s < 0:
            raise ValueError("lateness_s must be >= 0")


@dataclass(frozen=True)
class ClosedBucket:
    """A closed (or late) bucket count for one key."""

    key: str
    bucket_start_ms: int
    count: float
    late: bool = False


def bucket_start_ms(ts_ms: int, bucket_s: int) -> int:
    """Start (UTC epoch ms) of the bucket containing ``ts_ms``."""
    size = bucket_s * 1000
    return ts_ms - ts_ms % size


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def local_slot(ts_ms: int, tz: str, slot_s: int, period_s: int = WEEK_S) -> int:
    """Seasonal slot of ``ts_ms`` on the local wall clock of zone ``tz``.

    ``period_s`` is a week (slot 0 = Monday 00:00 local) or a day. Because the
    slot comes from the local wall clock, 09:00 stays 09:00 across DST changes;
    the repeated fall-back hour maps onto the same slots twice.
    """
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=_zone(tz))
    sec = dt.hour * 3600 + dt.minute * 60 + dt.second
    if period_s == WEEK_S:
        sec += dt.weekday() * DAY_S
    elif period_s != DAY_S:
        raise ValueError("period_s must be a day or a week")
    return sec // slot_s


def iso_utc(ts_ms: int) -> str:
    """UTC ISO 8601 text of an epoch-ms instant (``2014-07-01T00:00:00Z``)."""
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def utc_ms(text: str) -> int:
    """The epoch-ms instant of :func:`iso_utc`'s text.

    >>> utc_ms(iso_utc(1767571200000))
    1767571200000
    """
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class BucketAccumulator:
    """Per-key event-time bucket counts with a watermark; pure, no I/O.

    State is bounded: per key only the buckets not yet closed are held, i.e.
    at most ``lateness_s / bucket_s + 2`` entries.
    """

    def __init__(self, config: BucketConfig | None = None) -> None:
        self.config = config or BucketConfig()
        self._size_ms = self.config.bucket_s * 1000
        self._max_event_ms: int | None = None
        self._open: dict[str, dict[int, float]] = {}
        # Next bucket start to emit for each seen key.
        self._next: dict[str, int] = {}
        self.late_count = 0

    @property
    def watermark_ms(self) -> int | None:
        """Max event time seen minus the allowed lateness (None before any event)."""
        if self._max_event_ms is None:
            return None
        return self._max_event_ms - self.config.lateness_s * 1000

    def add(self, key: str, ts_ms: int, count: float = 1.0) -> list[ClosedBucket]:
        """Add a (partial) count at event time ``ts_ms``; return buckets closed or late.

        ``ts_ms`` may be any instant inside the bucket (e.g. its start). A count
        for a bucket already closed comes back as ``ClosedBucket(late=True)``.
        """
        start = bucket_start_ms(ts_ms, self.config.bucket_s)
        out: list[ClosedBucket] = []
        wm = self.watermark_ms
        if key in self._next and start < self._next[key] or (
            key not in self._next and wm is not None and start + self._size_ms <= wm
        ):
            self.late_count += 1
            out.append(ClosedBucket(key, start, count, late=True))
            if key not in self._next:
                # First sighting is late: the key still exists from the next open bucket.
                self._next[key] = bucket_start_ms(wm, self.config.bucket_s) if wm is not None else start
                self._open.setdefault(key, {})
        else:
            self._open.setdefault(key, {})
            self._open[key][start] = self._open[key].get(start, 0.0) + count
            self._next.setdefault(key, start)
        out.extend(self.advance(ts_ms))
        return out

    def advance(self, now_ms: int) -> list[ClosedBucket]:
        """Advance event time to ``now_ms`` (e.g. an idle heartbeat) and close buckets."""
        if self._max_event_ms is None or now_ms > self._max_event_ms:
            self._max_event_ms = now_ms
        wm = self.watermark_ms
        assert wm is not None
        out: list[ClosedBucket] = []
        for key in sorted(self._next):
            nxt = self._next[key]
            buckets = self._open[key]
            # Skip over very long idle gaps instead of emitting unbounded zeros.
            limit = wm - self.config.max_gap_buckets * self._size_ms
            if nxt < limit:
                nxt = bucket_start_ms(limit, self.config.bucket_s)
                for s in [s for s in buckets if s < nxt]:
                    out.append(ClosedBucket(key, s, buckets.pop(s)))
            while nxt + self._size_ms <= wm:
                out.append(ClosedBucket(key, nxt, buckets.pop(nxt, 0.0)))
                nxt += self._size_ms
            self._next[key] = nxt
        out.sort(key=lambda b: (b.bucket_start_ms, b.key))
        return out

    def snapshot(self) -> dict:
        """JSON-safe state."""
        return {
            "max_event_ms": self._max_event_ms,
            "next": dict(self._next),
            "open": {k: {str(s): c for s, c in v.items()} for k, v in self._open.items()},
            "late_count": self.late_count,
        }

    @classmethod
    def from_snapshot(cls, data: dict, config: BucketConfig | None = None) -> BucketAccumulator:
        """Restore from :meth:`snapshot` output."""
        acc = cls(config)
        acc._max_event_ms = data["max_event_ms"]
        acc._next = {k: int(v) for k, v in data["next"].items()}
        acc._open = {k: {int(s): float(c) for s, c in v.items()} for k, v in data["open"].items()}
        acc.late_count = int(data["late_count"])
        return acc
