"""Daily novelty: a burst that recurred at this time of day on each of the last days is routine.

A server's nightly job (a CPU spike at 03:15 every night) keeps looking rare to a
detector whose baseline cannot hold a five-minute spike (the slot mean blurs it;
the level ignores it), and the 12-24 h peak memory of the anomaly likelihood
forgets it by the next night. :class:`DailyPeaks` remembers, per time-of-day
slot and direction, the peak short-term surprise of today and of the two
previous days; a surprise no larger than the peak seen around the same time
(``spread`` slots either side) on *each* of the last ``days`` days is no news.
With ``days=2`` a one-off repeated once the next day (the same morning jam
two days running) still speaks; the third occurrence does not.

State: per slot, 3 peaks per direction and the local day of the newest one;
fixed size (a day of 30-minute slots: 48 x 7 numbers, about 2 KB of JSON). Pure, no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .buckets import _zone

__all__ = ["DailyPeaks", "local_day"]

#: Peaks kept per slot and direction: today, yesterday, the day before.
_DEPTH = 3


def local_day(ts_ms: int, tz: str) -> int:
    """Day number (days since 1970-01-01) on the local wall clock of zone ``tz``."""
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=_zone(tz))
    return dt.toordinal()


class DailyPeaks:
    """Per time-of-day slot: the peak surprise of today and the two previous days, per direction."""

    def __init__(self, slots: int, days: int = 2, spread: int = 1, margin: float = 1.0) -> None:
        if slots < 1 or not 1 <= days < _DEPTH or spread < 0 or margin < 1.0:
            raise ValueError("slots >= 1, 1 <= days <= 2, spread >= 0 and margin >= 1 required")
        self.slots, self.days, self.spread, self.margin = slots, days, spread, margin
        # peaks[direction][slot] = [today, yesterday, day before] relative to stamp[slot].
        self.peaks = [[[0.0] * _DEPTH for _ in range(slots)] for _ in range(2)]
        self.stamp = [-10] * slots

    def _roll(self, slot: int, day: int) -> None:
        lag = day - self.stamp[slot]
        if lag <= 0:
            return
        for per_dir in self.peaks:
            p = per_dir[slot]
            per_dir[slot] = ([0.0] * min(lag, _DEPTH) + p)[:_DEPTH]
        self.stamp[slot] = day

    def _ago(self, direction: int, slot: int, day: int, k: int) -> float:
        """Peak of ``slot`` ``k`` days before ``day`` (0 when not remembered)."""
        i = k - (day - self.stamp[slot])
        return self.peaks[direction][slot][i] if 0 <= i < _DEPTH else 0.0

    def routine(self, direction: int, slot: int, day: int, value: float) -> bool:
        """True when ``value`` is at most ``margin`` x the peak around ``slot`` on each of the last days."""
        if value <= 0.0:
            return True
        for k in range(1, self.days + 1):
            near = max(
                self._ago(direction, (slot + j) % self.slots, day, k) for j in range(-self.spread, self.spread + 1)
            )
            if value > near * self.margin:
                return False
        return True

    def learn(self, slot: int, day: int, values: tuple[float, float]) -> None:
        """Raise today's peaks of ``slot`` to ``values`` (up, down), kept to 3 decimals (a compact
        snapshot; they are compared within a margin of surprises of order 1)."""
        self._roll(slot, day)
        for per_dir, v in zip(self.peaks, values, strict=True):
            per_dir[slot][0] = max(per_dir[slot][0], round(v, 3))

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "peaks": [[list(p) for p in per_dir] for per_dir in self.peaks],
            "stamp": list(self.stamp),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output (same slot count required)."""
        if len(data["stamp"]) != self.slots:
            raise ValueError("daily-peaks snapshot has a different slot count")
        self.peaks = [[[float(v) for v in p] for p in per_dir] for per_dir in data["peaks"]]
        self.stamp = [int(v) for v in data["stamp"]]
