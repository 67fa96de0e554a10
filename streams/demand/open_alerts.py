"""The published open demand alerts of every worker, shared through one Redis hash, so that the
corroboration rule (corroboration.py) sees a category whose demand partition another worker owns.

Hash ``<namespace>:demand:open``: field = series key (``orders/category:masks``), value =
``"<direction> <bucket end, ms>"`` of the alert's last transition. Each worker writes the
transitions it has committed (OPEN and ESCALATE set the field, RESOLVED and NEW_NORMAL delete it)
and reads the hash at most every ``refresh_s`` seconds: open alerts are few (hundreds), one
HGETALL. A field is believed for ``max_age_ms`` of event time after its transition: an alert ends
within its NEW_NORMAL horizon, so an older field is one whose end was never written (Redis was
unreachable then); it is deleted when seen.

Redis being down never stops the demand stage: a failed write or read is counted and logged,
and the stage then judges with what it saw last (or, before any read, with its own partitions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from streams.demand.buckets import utc_ms
from streams.demand.lifecycle_config import ESCALATE, NEW_NORMAL, OPEN, RESOLVED
from streams.demand.series import series_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SharedOpenAlerts", "parse_entry"]

log = logging.getLogger(__name__)


def parse_entry(value: bytes | str) -> tuple[str, int] | None:
    """``(direction, bucket end ms)`` of one hash value; None when malformed.

    >>> parse_entry(b"surge 1767571200000"), parse_entry("collapse 5"), parse_entry(b"x")
    (('surge', 1767571200000), ('collapse', 5), None)
    """
    text = value.decode() if isinstance(value, bytes) else value
    direction, _, at = text.partition(" ")
    if direction not in ("surge", "collapse") or not at.isdigit():
        return None
    return direction, int(at)


class SharedOpenAlerts:
    """One worker's writer and reader of the shared hash (``redis`` an asyncio client)."""

    def __init__(self, redis: Redis, namespace: str, max_age_ms: int, refresh_s: float = 1.0,
                 on_error: Any = None) -> None:
        self.redis = redis
        self.key = f"{namespace}:demand:open"
        self.max_age_ms = max_age_ms
        self.refresh_s = refresh_s
        self.on_error = on_error  # a counter (``.inc()``) of failed reads and writes, or None
        self.view: dict[str, str] | None = None  # series key -> direction, as last read
        self._read_at = 0.0

    async def record(self, alerts: Iterable[dict[str, Any]]) -> None:
        """Write the transitions of committed alert records (in order: the last one wins)."""
        pipe = None
        for a in alerts:
            state = a.get("state")
            if state not in (OPEN, ESCALATE, RESOLVED, NEW_NORMAL):
                continue
            if pipe is None:
                pipe = self.redis.pipeline(transaction=False)
            field = series_key(a["key"], a["measure"])
            if state in (OPEN, ESCALATE):
                pipe.hset(self.key, field, f"{a['direction']} {utc_ms(a['bucket_end'])}")
            else:
                pipe.hdel(self.key, field)
        if pipe is None:
            return
        try:
            await pipe.execute()
        except Exception:  # noqa: BLE001 - Redis down must not stop the stage
            self._failed("write")

    async def refresh(self, event_now_ms: int | None, force: bool = False) -> dict[str, str] | None:
        """The shared view (re-read when ``refresh_s`` passed): fields older than ``max_age_ms``
        before ``event_now_ms`` (the stage's event time) are dropped and deleted."""
        now = time.monotonic()
        if not force and self.view is not None and now - self._read_at < self.refresh_s:
            return self.view
        self._read_at = now
        try:
            raw = await self.redis.hgetall(self.key)
        except Exception:  # noqa: BLE001
            self._failed("read")
            return self.view
        view, stale = {}, []
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            entry = parse_entry(value)
            if entry is None or (event_now_ms is not None and entry[1] < event_now_ms - self.max_age_ms):
                stale.append(name)
            else:
                view[name] = entry[0]
        if stale:
            try:
                await self.redis.hdel(self.key, *stale)
            except Exception:  # noqa: BLE001
                self._failed("write")
        self.view = view
        return view

    def _failed(self, what: str) -> None:
        if self.on_error is not None:
            self.on_error.inc()
        log.warning("demand: could not %s the shared open alerts (%s); judging with what was seen last", what, self.key,
                    exc_info=True)
