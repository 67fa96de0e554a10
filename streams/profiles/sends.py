"""What the profiles agent sends besides its decisions: changelog writes, dead letters, and the
bookkeeping that keeps a send Kafka refuses from being silent (issue 21).

- Changelog writes (the memory store) are coalesced: :meth:`ProfileSends.write` stores the new
  value in the table's memory at once (what a lookup reads) and marks the key pending; the
  changelog gets each pending key's current value once per flush (:meth:`flush_changelog`,
  at most ``TOUCHPOINT_BATCH_WITHIN_S`` after the write and before every commit), produced in
  batches per partition (streams/kafka/batches.py). A write whose delivery fails marks its key,
  and :meth:`ProfileSends.repair` (run before every commit) sends the key's current value again
  and awaits it. Kafka unavailable: it raises and the commit is withheld; a value Kafka refuses
  for good is dead-lettered. Must-land sends (absorbs, forwarded erasures) are awaited before
  the write that depends on them, so before its changelog record as well.
- Public records (profile-updates, audience changes) of values written in memory are appended
  to batches per topic and partition (:meth:`ProfileSends.publish`, no await per record) and
  sent by the flush, which awaits their delivery before the changelog records of those values
  (a replay skips a record whose value is in the changelog, so they must land first).
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
from typing import TYPE_CHECKING, Any

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from streams.events.reasons import Reason, Rejected
from streams.kafka.batches import BatchProducer
from streams.kafka.delivery import aiokafka_producer

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
        self.pending: dict[bytes, int] = {}  # written in memory, changelog record not sent yet: key -> partition
        self.held: list[asyncio.Future] = []  # public records of values in memory, awaited before their changelog
        self._flush_lock = asyncio.Lock()
        self._flushing: asyncio.Future | None = None
        self.changelog_failed = ctx.metrics.send_failures.labels("changelog")
        self.batches = BatchProducer(lambda: aiokafka_producer(app), ctx.settings.partitions, ctx.settings.max_record_bytes,
                                     self.changelog_failed)
        self.events_failed = ctx.metrics.send_failures.labels("profile-events")
        # Public records: their failures are counted once, as events_failed, when _land sees them.
        self.public = BatchProducer(lambda: aiokafka_producer(app), ctx.settings.partitions, ctx.settings.max_record_bytes)
        self._letters: set[asyncio.Future] = set()  # dead letters sent from delivery callbacks

    async def write(self, key: bytes, value: bytes, partition: int) -> None:
        """``table[key] = value``. With the memory store, done as Faust's Table does it (store,
        then the changelog record on the partition being processed) minus its per-record
        FutureMessage and send buffer, and coalesced: the value is in memory at once, the
        changelog record leaves with the next :meth:`flush_changelog`."""
        if not self.direct:
            self.table[key] = value
            return
        self.table.data[key] = value
        self.pending[key] = partition

    def hold(self, fut: asyncio.Future) -> None:
        """A public record (profile-updates, audiences) of a value written in memory: it must be
        in Kafka before that value's changelog record (a replay would skip its record and never
        publish it again), so the next flush awaits it first."""
        self.held.append(fut)

    def publish(self, topic: str, key: bytes, value: bytes | None) -> None:
        """A public record (profile-updates, audiences) of a value about to be written in memory,
        appended to its partition's batch; the next flush sends it and awaits it before that
        value's changelog record (like :meth:`hold`). One Kafka would refuse (over the record
        limit: a misconfigured limit, profiles are bounded well under it) is counted and logged
        like an undelivered one; the profile's next change publishes it again."""
        try:
            self.public.append(topic, key, value)
        except MessageSizeTooLargeError as exc:
            self.events_failed.inc()
            log.error("profiles: a profile-update/audience record of %r was refused: %s", key[:40], exc)

    def kick(self) -> None:
        """Start a flush in the background unless one is running (the agent goes on meanwhile)."""
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush_logged())

    async def _flush_logged(self) -> None:
        try:
            await self.flush_changelog()
        except Exception:  # the batches stay; the next flush or the commit's repair sends them
            log.exception("profiles: changelog flush failed")

    async def flush_changelog(self) -> int:
        """One changelog record per pending key (its current value), in batches per partition,
        after the public records of those values landed; returns how many. Delivery is checked
        by :meth:`repair` before each commit."""
        async with self._flush_lock:
            return await self._flush()

    async def _flush(self) -> int:
        if not self.pending and not self.held and not len(self.public):
            return 0
        # Values and the public records they depend on, taken at one moment: every value in
        # memory has its public records in ``held`` or appended to ``public`` already (they are
        # published before the write), and ``public.send`` takes its batches before it awaits.
        pending, self.pending = self.pending, {}
        held, self.held = self.held, []
        try:
            await self.public.send(held)
        except Exception:
            # Not all handed over (the rest leave with the next flush, in order): these values
            # wait for their public records; what was handed over is awaited first next time.
            pending.update(self.pending)
            self.pending, self.held = pending, held + self.held
            raise
        data = self.table.data
        # Only partitions still ours: after a revocation another worker writes these keys, and a
        # late record of ours could land after its newer one. (The revocation's commit flushed
        # what was completed; anything else is replayed by the new owner from the commit.)
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.events_topic}
        values = [(key, partition, data.get(key)) for key, partition in pending.items() if partition in assigned]
        await self._land(held)
        self.public.take_failures()  # counted and logged by _land already
        changelog = self.table.changelog_topic_name
        for key, partition, value in values:
            try:
                self.batches.append(changelog, key, value, partition, tag=(key, partition))
            except Exception as exc:  # refused at once (too large): repair() decides
                self.changelog_failed.inc()
                log.error("profiles: changelog value of %r refused at send (%s); repair decides", key[:40], type(exc).__name__)
                self.dirty[key] = partition
        try:
            await self.batches.send()
        except Exception:
            # Not handed to the producer: the batches stay and leave with the next flush.
            log.exception("profiles: changelog batches not sent; sent again with the next flush")
            raise
        return len(values)

    async def _land(self, held: list[asyncio.Future]) -> None:
        """Await public records. One that failed (refused for good: a misconfigured topic; or
        undelivered after the producer's own retries) is counted and logged; the profile's next
        change publishes it again. Never a reason to stop the partition."""
        if not held:
            return
        for result in await asyncio.gather(*held, return_exceptions=True):
            if isinstance(result, BaseException):
                self.events_failed.inc()
                log.error("profiles: a profile-update/audience record was not delivered: %s", type(result).__name__)

    async def repair(self) -> None:
        """Before each commit: every changelog write that failed is sent again with the key's
        current value and awaited (Kafka unavailable: raises, the commit is withheld and this
        runs again); a value Kafka refuses for good is dead-lettered."""
        async with self._flush_lock:
            await self._flush()
            await self.app.producer.flush()
            await asyncio.sleep(0)  # let the delivery callbacks of the flushed sends run
            _, failed = self.batches.take_failures()
            for key, partition in failed:  # type: ignore[misc]  # tags are (key, partition)
                self.dirty[key] = partition
            if not self.dirty:
                return
            # Only partitions still ours (a revocation commits before it gives them up): a new owner
            # recovers without the value and replays the uncommitted input, which re-applies it.
            assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.events_topic}
            changelog = self.table.changelog_topic_name
            values = {key: (partition, self.stored(key) if partition in assigned else None) for key, partition in self.dirty.items()}
            held, self.held = self.held, []
            await self._land(held)  # what the current values depend on, first
            for key, (partition, value) in values.items():
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
