"""A source topic consumed in batches outside Faust's per-record stream (the ingest input).

Faust delivers every fetched record on its own: a hand-over from the consumer thread, the
conductor, the stream iterator, the take buffer and the ack, ~38 us of worker CPU per input
event; ``getmany`` on a consumer of our own costs 2-3 us per record (docs/performance.md).
:class:`BatchSource` is a ``mode.Service`` that Faust starts and stops with the worker
(``app.service``): its own aiokafka consumer on the worker's event loop, in a consumer group of
its own (``Settings.ingest_group``: Faust's client-side assignor cannot share a group with a
plain consumer), so more workers share the input partitions as they share everything else.

Per batch (whatever the broker has, up to ``batch_size`` records, no wait window):
admit through the in-order guard (:class:`~streams.kafka.ordering.OrderedSource`), hand the
records to the stage, then complete or fail. Every ``commit_interval_s``: the hooks
(``before_commit``: held-back demand counts, batched sends), the producer's flush, a check that
every send landed, then the commit of the guard's completed offsets: an offset is committed only
after everything its records produced is in Kafka. On revocation (a
``ConsumerRebalanceListener``) the batch in flight finishes (bounded wait), the same flush and
commit run while the partitions are still ours, and their cursors are dropped; on assignment a
partition resumes at its group's committed offset (or, the first time, at the offset Faust's
group had committed: an upgrade does not re-read the topic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError
from mode import Service

from streams.kafka.ordering import OrderedSource

__all__ = ["BatchSource", "ConsumerPositions", "Undelivered"]

log = logging.getLogger(__name__)

IDLE_WAIT_MS = 200   # getmany returns as soon as records are there; this only bounds an idle wait
FAIL_PAUSE_S = 0.5   # after a batch raised: the partitions restart from their commit


class Undelivered(RuntimeError):
    """A send of records the commit would cover was not delivered: the commit is refused."""


class ConsumerPositions:
    """:class:`~streams.kafka.ordering.Positions` of our own aiokafka consumer."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.consumer: Any = None  # set when the service starts (aiokafka binds the running loop)

    async def position(self, partition: int) -> int | None:
        tp = TopicPartition(self.topic, partition)
        if self.consumer is None or tp not in self.consumer.assignment():
            return None
        return int(await self.consumer.position(tp))

    async def seek(self, partition: int, offset: int) -> None:
        tp = TopicPartition(self.topic, partition)
        if self.consumer is not None and tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: BatchSource) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.hand_over({tp.partition for tp in revoked if tp.topic == self.owner.topic})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner.take_over({tp.partition for tp in assigned if tp.topic == self.owner.topic})


class BatchSource(Service):
    """One topic, consumed in batches by a consumer of our own (see the module doc).

    ``consumer`` builds the (unstarted) aiokafka consumer in the source's group, at start (it
    binds the running loop); ``source`` the ordered source whose guard decides what is processed
    and committed (its ``positions``, when a :class:`ConsumerPositions`, get the consumer); ``process`` is called with the admitted
    records of each batch, in order per partition; ``before_commit`` runs before the producer's
    flush, and ``delivered`` after it (it raises :class:`Undelivered` when a send failed), then
    ``after_delivered`` (what may only happen once the sends landed) before the commit.
    """

    def __init__(self, *, consumer: Callable[[], Any], source: OrderedSource, batch_size: int, commit_interval_s: float, hand_over_s: float,
                 process: Callable[[Sequence[Any]], Awaitable[None]], flush: Callable[[], Awaitable[None]],
                 before_commit: Sequence[Callable[[], Awaitable[Any]]] = (), delivered: Callable[[], None] | None = None,
                 after_delivered: Sequence[Callable[[], Awaitable[Any]]] = (),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._new_consumer = consumer
        self.consumer: Any = None
        self.source = source
        self.topic = source.name
        self.batch_size = batch_size
        self.commit_interval_s = commit_interval_s
        self.hand_over_s = hand_over_s
        self.process = process
        self.flush = flush
        self.before_commit = list(before_commit)
        self.delivered = delivered
        self.after_delivered = list(after_delivered)  # e.g. marking data keys published: their sends landed
        self._lock = asyncio.Lock()  # one batch or one commit at a time
        self._next_commit = 0.0

    async def on_start(self) -> None:
        self.consumer = self._new_consumer()
        if isinstance(self.source.positions, ConsumerPositions):
            self.source.positions.consumer = self.consumer
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        try:
            async with self._lock:
                await self._commit()
        except Exception:  # stopping: what is not committed is processed again by the next owner
            log.exception("%s: final commit failed", self.source.stage)
        if self.consumer is not None:
            await self.consumer.stop()

    @Service.task
    async def _consume(self) -> None:
        while not self.should_stop:
            try:
                await self.run_once()
            except ConsumerStoppedError:
                return

    async def run_once(self) -> int:
        """One batch (whatever the broker has, no wait window), then the commit when it is due;
        returns the number of records fetched."""
        fetched = await self.consumer.getmany(timeout_ms=IDLE_WAIT_MS, max_records=self.batch_size)
        records = [r for batch in fetched.values() for r in batch]  # in order per partition
        if records:
            async with self._lock:
                try:
                    async with self.source.admitted(records) as admitted:
                        if admitted.keep:
                            await self.process([records[i] for i in admitted.keep])
                except Exception:
                    log.exception("%s: a batch of %d records failed; its partitions restart from their commit",
                                  self.source.stage, len(records))
                    await asyncio.sleep(FAIL_PAUSE_S)
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + self.commit_interval_s
            async with self._lock:
                await self._commit()
            await self._watch()
        return len(records)

    async def _watch(self) -> None:
        assigned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic}
        if assigned:
            try:
                await self.source.watch(assigned)
            except Exception as exc:  # the broker is away or a rebalance is on: the next tick looks again
                log.warning("%s: watch skipped (%s: %s)", self.source.stage, type(exc).__name__, exc)
        metrics = self.source.metrics
        if metrics is not None:
            metrics.partition_stuck.labels(self.source.stage).set(self.source.stuck_seconds())

    async def commit(self) -> bool:
        async with self._lock:
            return await self._commit()

    async def _commit(self) -> bool:
        """Hooks, flush, delivery check, then the guard's completed offsets (caller holds the lock)."""
        guard = self.source.guard
        done = guard.to_commit()
        if not done:
            return True
        try:
            for hook in self.before_commit:
                await hook()
            await self.flush()
            await asyncio.sleep(0)  # let the delivery callbacks of the flushed sends run
            if self.delivered is not None:
                self.delivered()
            for hook in self.after_delivered:
                await hook()
            assignment = self.consumer.assignment()
            offsets = {TopicPartition(self.topic, p): o for p, o in done.items() if TopicPartition(self.topic, p) in assignment}
            if not offsets:
                return False
            await self.consumer.commit(offsets)
        except Undelivered as exc:
            log.error("%s: %s; the partitions restart from their commit", self.source.stage, exc)
            self.source.restart_all()
            return False
        except Exception:
            log.exception("%s: commit failed; the records will be processed again", self.source.stage)
            return False
        for tp, offset in offsets.items():
            guard.committed(tp.partition, offset)
        return True

    async def hand_over(self, revoked: set[int]) -> None:
        """Revocation: let the batch in flight finish (bounded), flush and commit while the
        partitions are still ours, then drop their cursors."""
        try:
            await asyncio.wait_for(self._lock.acquire(), self.hand_over_s)
        except TimeoutError:
            log.warning("%s: the batch in flight did not finish within %.0fs of a revocation; its records will be processed "
                        "again by the next owner", self.source.stage, self.hand_over_s)
        else:
            try:
                await self._commit()
            finally:
                self._lock.release()
        self.source.guard.forget(revoked)
        for p in revoked:
            self.source.failing_since.pop(p, None)

    async def take_over(self, assigned: set[int]) -> None:
        """Assignment: each new partition resumes at the offset its cursor starts from."""
        fresh = {p for p in assigned if not self.source.guard.knows(p)}
        if not fresh:
            return
        await self.source.ensure(fresh)
        for p in fresh:
            self.consumer.seek(TopicPartition(self.topic, p), self.source.guard.expected(p))
