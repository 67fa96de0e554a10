"""What the profiles agent sends besides its decisions: changelog writes, dead letters, and the
bookkeeping that keeps a send Kafka refuses from being silent (issue 21).

- Changelog writes go straight to the producer (the memory store) and are not awaited one by
  one; a write whose delivery fails marks its key, and :meth:`ProfileSends.repair` (run before
  every commit) sends the key's current value again and awaits it. Kafka unavailable: it raises
  and the commit is withheld; a value Kafka refuses for good is dead-lettered.
- A forward (an event or absorb re-sent to a survivor) is not awaited either; one that fails is
  counted and dead-lettered.
- :meth:`ProfileSends.dead_letter` writes a record this stage cannot land to the DLQ with a
  reason (``refused_by_broker``, ``processing_error``), awaited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import faust
from aiokafka.errors import KafkaError

from streams.events.reasons import Reason, Rejected

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["ProfileSends", "Where"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Where:
    """Where a dead-lettered record was read or headed (the DLQ's ``tp.source.*`` headers)."""

    topic: str
    partition: int
    offset: int


class ProfileSends:
    """The profiles agent's sends that are not its decisions (see the module doc)."""

    def __init__(self, app: faust.App, table: Any, events_topic: str, dlq_topic: str, ctx: WorkerContext,
                 stored: Callable[[bytes], bytes | None]) -> None:
        self.app, self.table, self.events_topic, self.dlq_topic = app, table, events_topic, dlq_topic
        self.codec, self.metrics, self.stored = ctx.dlq_codec, ctx.metrics, stored
        self.direct = ctx.settings.store.startswith("memory")
        self.dirty: dict[bytes, int] = {}  # changelog writes not delivered: key -> partition
        self.changelog_failed = ctx.metrics.send_failures.labels("changelog")
        self.events_failed = ctx.metrics.send_failures.labels("profile-events")
        self._letters: set[asyncio.Future] = set()  # dead letters sent from delivery callbacks

    async def write(self, key: bytes, value: bytes, partition: int) -> None:
        """``table[key] = value``. With the memory store, done as Faust's Table does it (store,
        then the changelog record on the partition being processed) minus its per-record
        FutureMessage and send buffer: the record goes straight to the producer, and its
        delivery is checked by :meth:`repair` before each commit."""
        if not self.direct:
            self.table[key] = value
            return
        self.table.data[key] = value
        try:
            fut = await self.app.producer.send(self.table.changelog_topic_name, key, value, partition=partition, timestamp=None, headers=None)
        except Exception:
            self.changelog_failed.inc()
            self.dirty[key] = partition  # refused at send() (e.g. too large): repair() decides
            raise
        fut.add_done_callback(partial(self._changelog_done, key, partition))

    def _changelog_done(self, key: bytes, partition: int, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        self.changelog_failed.inc()
        if key not in self.dirty:
            log.error("profiles: changelog write of %r not delivered (%s); it is sent again before the next commit",
                      key[:40], type(fut.exception()).__name__)
        self.dirty[key] = partition

    async def repair(self) -> None:
        """Before each commit: every changelog write that failed is sent again with the key's
        current value and awaited (Kafka unavailable: raises, the commit is withheld and this
        runs again); a value Kafka refuses for good is dead-lettered."""
        await self.app.producer.flush()
        await asyncio.sleep(0)  # let the delivery callbacks of the flushed sends run
        if not self.dirty:
            return
        # Only partitions still ours (a revocation commits before it gives them up): a new owner
        # recovers without the value and replays the uncommitted input, which re-applies it.
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.events_topic}
        changelog = self.table.changelog_topic_name
        for key, partition in list(self.dirty.items()):
            value = self.stored(key) if partition in assigned else None
            try:
                if value is not None:
                    await (await self.app.producer.send(changelog, key, value, partition=partition, timestamp=None, headers=None))
            except KafkaError as exc:
                if exc.retriable:
                    raise
                log.error("profiles: changelog value of %r refused for good (%s); dead-lettered", key[:40], type(exc).__name__)
                await self.dead_letter(value, f"changelog value of {len(value or b'')} bytes refused: {type(exc).__name__}",
                                       Where(changelog, partition, -1))
            self.dirty.pop(key, None)

    async def forward(self, key: str, value: bytes) -> Any:
        """Send a record to ``profile-events`` keyed ``key``; returns its delivery future."""
        return await self.app.producer.send(self.events_topic, key.encode(), value, partition=None, timestamp=None, headers=None)

    def forward_done(self, key: str, value: bytes, fut: asyncio.Future) -> None:
        """Delivery callback of a forward that is not awaited: a failure is counted and the
        forwarded record dead-lettered (a replay would not send it again: its record is done)."""
        if fut.cancelled() or fut.exception() is None:
            return
        self.events_failed.inc()
        name = type(fut.exception()).__name__
        log.error("profiles: forward to %r not delivered (%s); dead-lettered", key[:40], name)
        task = asyncio.ensure_future(self.dead_letter(value, f"forward to a survivor not delivered: {name}", Where(self.events_topic, -1, -1)))
        self._letters.add(task)
        task.add_done_callback(self._letters.discard)

    async def dead_letter(self, value: bytes | None, why: str, where: Any, reason: Reason = Reason.REFUSED_BY_BROKER) -> None:
        """A record this stage cannot land: to the DLQ with a reason (awaited), never silently."""
        letter = self.codec.dead_letter(value, Rejected(reason, why[:300], "profiles"), where.topic, where.partition,
                                        where.offset, time.time_ns() // 1_000_000)
        await (await self.app.producer.send(self.dlq_topic, None, letter.value, partition=None, timestamp=None, headers=letter.headers))
        self.metrics.dead_letters.labels(reason.value).inc()
