"""The demand tables' writes, one changelog record per key per flush (memory store).

Faust's ``Table.__setitem__`` serializes the value and queues one changelog record per write,
through its per-record send buffer: a bucket close rewrites every key of its partition, and
every partial count rewrites its key (docs/performance.md: demand agent + Faust's producer
buffer for its changelog ~16% of the worker). :class:`CoalescedWrites` puts the new value in the
table's memory at once (what the stage and the /demand views read, so reads stay exact) and marks
the key pending; :meth:`~CoalescedWrites.before_commit`, run by the commit before the offsets of
the records that wrote them are committed, sends each pending key's current value once:

1. the pending keys and their values are taken at one moment (synchronously);
2. the producer is flushed: the alert records of those values (sent before their write) land
   first, so a recovered value never skips an alert that was not delivered;
3. the values are encoded as Faust encodes them (the changelog topic's own ``prepare_key`` /
   ``prepare_value``: byte-identical keys, so compaction keeps working), in slices that hand the
   event loop back, and appended to batches per partition (streams/kafka/batches.py);
4. the producer is flushed again and every batch checked: a value that did not land marks its key
   pending again and the commit is withheld (raised), so no offset is committed past a write
   that is not in Kafka. The next commit sends the key's current value.

Keys of partitions no longer assigned are dropped: the revocation's commit ran this while they
were still ours; the new owner replays from the commit. With another store every write goes
through ``table[key] = value`` as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from streams.demand.slicing import run_sliced

__all__ = ["CoalescedWrites", "Undelivered"]

log = logging.getLogger(__name__)


class Undelivered(RuntimeError):
    """A changelog value did not land: the commit is withheld, the key is sent again."""


class CoalescedWrites:
    """``tables``: name -> Faust table (memory store when ``direct``); ``batches`` a
    :class:`~streams.kafka.batches.BatchProducer`; ``flush`` the producer's flush; ``assigned``
    the demand-counts partitions this worker holds now; ``failed`` counts values refused at once."""

    def __init__(self, tables: dict[str, Any], batches: Any, flush: Callable[[], Awaitable[Any]],
                 assigned: Callable[[], set[int]], direct: bool, slice_s: float = 0.01, failed: Any = None) -> None:
        self.tables, self.batches, self.flush, self.assigned = tables, batches, flush, assigned
        self.direct, self.slice_s, self.failed = direct, slice_s, failed
        self.pending: dict[tuple[str, str], int] = {}  # (table name, key) -> partition
        self._lock = asyncio.Lock()
        self.sent = 0  # changelog records sent (tests, metrics)

    def set(self, table: str, key: str, value: Any, partition: int) -> None:
        """``tables[table][key] = value``, its changelog record left for the next commit."""
        t = self.tables[table]
        if not self.direct:
            t[key] = value
            return
        t.data[key] = value
        self.pending[(table, key)] = partition

    async def before_commit(self) -> None:
        """Send every pending key's current value once and check it landed (the module doc)."""
        async with self._lock:
            if not self.pending:
                return
            pending, self.pending = self.pending, {}
            assigned = self.assigned()
            values = [(name, key, p, self.tables[name].data.get(key)) for (name, key), p in pending.items() if p in assigned]
            try:
                await self.flush()  # what these values depend on (their alerts) lands first
                await run_sliced(self._append(values), self.slice_s)
                self.sent += await self.batches.send()
                await self.flush()
                await asyncio.sleep(0)  # let the delivery callbacks of the flushed batches run
            except BaseException:
                self._again(pending)
                raise
            _, failed = self.batches.take_failures()
            if failed:
                self._again({tag: pending[tag] for tag in failed if tag in pending})
                raise Undelivered(f"{len(failed)} demand changelog value(s) not delivered; sent again with the next commit")

    def _again(self, keys: dict[tuple[str, str], int]) -> None:
        for tag, p in keys.items():
            self.pending.setdefault(tag, p)

    def _append(self, values: list[tuple[str, str, int, Any]]) -> Iterator[None]:
        for name, key, partition, value in values:
            table = self.tables[name]
            topic = table.changelog_topic
            k, _ = topic.prepare_key(key, table.key_serializer)
            v, _ = topic.prepare_value(value, table.value_serializer) if value is not None else (None, None)
            try:
                self.batches.append(table.changelog_topic_name, k, v, partition, tag=(name, key))
            except Exception as exc:  # over the producer's limit: counted and logged, as Faust's send did
                if self.failed is not None:
                    self.failed.inc()
                log.error("demand: changelog value of %r refused (%s: %s)", key[:60], type(exc).__name__, exc)
            yield
