"""The event-time window: how far from its receive time an event's time may be.

Event time is first corrected for client clock skew by Segment's rule (``receivedAt - (sentAt -
timestamp)`` when ``sentAt`` is present, ``streams/ingest/normalize.py``). What is left is
checked against a window around the receive time ``r`` (the input record's Kafka timestamp,
so a replay gives the same answer):

- later than ``r + max_future``: the client's clock is wrong and nothing better is known, so
  the event is applied at ``r`` (its time is corrected, counted as ``future``). An event from
  the future would otherwise advance the demand watermark and a profile's last_seen for good;
- earlier than ``r - max_past``: dead-lettered as ``event_time_out_of_window`` (e.g. a 1970 or
  0001 timestamp from a broken client); a backfill older than that needs a larger setting;
- inside: unchanged.

So no accepted event is later than its receive time plus ``max_future``, and no clock
(demand partition watermark, profile ``ls``) can move further ahead of real time than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.events.model import Touchpoint
from streams.events.reasons import Reason, Rejected

__all__ = ["EventTimeWindow"]


@dataclass(frozen=True, slots=True)
class EventTimeWindow:
    """``[received - max_past_ms, received + max_future_ms]``; see the module doc for the rule."""

    max_future_ms: int
    max_past_ms: int
    corrected: Any = None  # counter child (touchpoint_event_time_corrected_total{reason="future"}) or None

    def apply(self, touchpoint: Touchpoint) -> Touchpoint | Rejected:
        ts, received = touchpoint.ts_ms, touchpoint.received_at_ms
        if ts > received + self.max_future_ms:
            touchpoint.ts_ms = received
            if self.corrected is not None:
                self.corrected.inc()
            return touchpoint
        if ts < received - self.max_past_ms:
            return Rejected(Reason.EVENT_TIME_OUT_OF_WINDOW,
                            f"event time {_iso(ts)} is more than {self.max_past_ms // 86_400_000} days before it was received"
                            " (TOUCHPOINT_EVENT_MAX_PAST_S)")
        return touchpoint


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"
