"""Faust wiring of :class:`~streams.kafka.ordered.OffsetGuard`: our agents' source topics are
consumed in order and committed by the project (see ``ordered.py`` for why).

- ``OrderedSources.topic(app, name)`` declares a source topic with ``acks=False`` (Faust never
  commits it) and returns its :class:`OrderedSource`;
- ``OrderedSource.admit(records)`` keeps the records to process, in order, and rewinds the
  consumer over a gap; ``complete`` marks them processed;
- a timer (every ``commit_interval_s``) and every revocation send what stages held back
  (``before_commit``), flush the producer, then commit the guards' offsets: an offset is
  committed only after everything its records produced is in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from streams.kafka.client import admin_client, reader
from streams.kafka.delivery import plain_commit
from streams.kafka.ordered import OffsetGuard, Verdict
from streams.kafka.topics import group_offsets
from streams.resilience import retry_until_ok
from streams.settings import Settings

__all__ = ["OrderedSources", "OrderedSource", "Admitted", "Positions", "FaustPositions", "BrokerView"]

log = logging.getLogger(__name__)

REWIND_EVERY_S = 5.0  # a rewind that did not take (records still missing) is asked again
STALL_AFTER_S = 5.0   # consumer past the cursor and no progress this long: rewind


class Positioned(Protocol):
    partition: int
    offset: int


class BrokerView:
    """Committed offsets, log starts and first offsets, asked with clients of our own (lazily)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = admin_client(self.settings)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = reader(self.settings, auto_offset_reset="earliest")
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def start_offsets(self, topic: str, partitions: Iterable[int], groups: Sequence[str] = ()) -> dict[int, int]:
        """Where the group resumes each partition: the committed offset of the first of
        ``groups`` (default: the worker's Faust group) that has one, else the log start."""
        async with self._lock:
            admin, consumer = await self._clients()
            tps = [TopicPartition(topic, p) for p in partitions]
            out: dict[int, int] = {}
            for group in groups or (self.settings.app_id,):
                committed = await group_offsets(admin, group)
                for tp in tps:
                    meta = committed.get(tp)
                    if tp.partition not in out and meta is not None and meta.offset >= 0:
                        out[tp.partition] = meta.offset
            missing = [tp for tp in tps if tp.partition not in out]
            if missing:
                begins = await consumer.beginning_offsets(missing)
                out.update({tp.partition: begins[tp] for tp in missing})
            return out

    async def first_offset_from(self, topic: str, partition: int, offset: int, timeout_s: float = 3.0) -> int | None:
        """The offset of the first record at or after ``offset`` (None if none arrived in time)."""
        async with self._lock:
            _, consumer = await self._clients()
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1)
            records = batch.get(tp) or []
            return records[0].offset if records else None

    async def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    await client.stop() if isinstance(client, AIOKafkaConsumer) else await client.close()
                except Exception:  # closing on shutdown must not raise
                    log.debug("closing broker view client", exc_info=True)
        self._admin = self._consumer = None


class Positions(Protocol):
    """The consumer of one source topic, as the guard needs it: where it is, and a seek back."""

    async def position(self, partition: int) -> int | None: ...
    async def seek(self, partition: int, offset: int) -> None: ...


class FaustPositions:
    """The worker's Faust consumer (sources of Faust agents)."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app, self.topic = app, topic

    async def position(self, partition: int) -> int | None:
        return await self.app.consumer.position(TP(self.topic, partition))

    async def seek(self, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(self.topic, partition), offset)


@dataclass(slots=True)
class Admitted:
    """One admitted batch (:meth:`OrderedSource.admitted`): the indexes of the records to
    process, in order; :meth:`fail` makes the partitions restart from their commit."""

    keep: list[int]
    last: dict[int, tuple[int, int]]
    failed: bool = False

    def fail(self) -> None:
        self.failed = True


class OrderedSource:
    """One source topic: its guard, and the calls an agent makes around each batch."""

    def __init__(self, app: faust.App, name: str, stage: str, broker: BrokerView, metrics: Any = None,
                 positions: Positions | None = None, groups: Sequence[str] = ()) -> None:
        self.app = app
        self.name = name
        self.stage = stage
        self.guard = OffsetGuard()
        self.broker = broker
        self.metrics = metrics
        self.positions: Positions = positions if positions is not None else FaustPositions(app, name)
        self.groups = tuple(groups)  # whose committed offsets a partition resumes from (default: Faust's group)
        # Counter children resolved once: replays are counted on the per-event path.
        self._replayed = metrics.ordering.labels(stage, "replay") if metrics is not None else None
        self._rewound = metrics.ordering.labels(stage, "rewind") if metrics is not None else None
        # Admitted records still being processed: a revocation waits for them before its commit
        # (Faust's own wait only covers topics it acks, and ours are acks=False).
        self._busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        # Partitions whose processing failed and has not completed a record since (monotonic s of
        # the first failure): a poison record retried forever shows here, in /readyz and in
        # touchpoint_partition_stuck_seconds (issue 21).
        self.failing_since: dict[int, float] = {}

    @asynccontextmanager
    async def admitted(self, records: Sequence[Positioned]) -> AsyncIterator[Admitted]:
        """The one shape of every agent's loop: admit, process, then complete or fail.

        ``async with source.admitted(records) as batch:`` processes ``batch.keep``; leaving the
        block completes the batch, an exception (re-raised) or ``batch.fail()`` fails it."""
        keep, last = await self.admit(records)
        batch = Admitted(keep, last)
        try:
            yield batch
        except BaseException:
            self.fail(last)
            raise
        if batch.failed:
            self.fail(last)
        else:
            self.complete(last)

    async def admit(self, records: Sequence[Positioned]) -> tuple[list[int], dict[int, tuple[int, int]]]:
        """Indexes of ``records`` to process, in order, and per partition (last offset, epoch)
        to pass to :meth:`complete` once they are processed."""
        guard = self.guard
        await self.ensure({r.partition for r in records})
        keep: list[int] = []
        last: dict[int, tuple[int, int]] = {}
        gaps: dict[int, int] = {}
        now = time.monotonic()
        for i, r in enumerate(records):
            verdict = guard.admit(r.partition, r.offset, now)
            if verdict is Verdict.PROCESS:
                keep.append(i)
                last[r.partition] = (r.offset, guard.epoch(r.partition))
            elif verdict is Verdict.GAP:
                gaps.setdefault(r.partition, r.offset)
            elif self._replayed is not None:
                self._replayed.inc()
        for p, offset in gaps.items():
            if await self._on_gap(p, offset):  # a real hole: this record and the rest may go on
                retry = [i for i, r in enumerate(records) if r.partition == p and r.offset >= offset]
                for i in retry:
                    if guard.admit(p, records[i].offset, now) is Verdict.PROCESS:
                        keep.append(i)
                        last[p] = (records[i].offset, guard.epoch(p))
                keep.sort()
        if last:
            self._busy += 1
            self.idle.clear()
        return keep, last

    async def ensure(self, partitions: set[int]) -> None:
        """Start the cursors of partitions seen for the first time since their assignment."""
        unknown = {p for p in partitions if not self.guard.knows(p)}
        if unknown:
            retries = self.metrics.dependency_retries.labels("kafka") if self.metrics is not None else None
            starts = await retry_until_ok(lambda: self.broker.start_offsets(self.name, sorted(unknown), self.groups), "kafka", retries)
            now = time.monotonic()
            for p, offset in starts.items():
                if not self.guard.knows(p):  # the agent and the watchdog may both have asked
                    self.guard.start(p, offset, now)

    async def watch(self, assigned: set[int]) -> None:
        """Rewind assigned partitions whose consumer position ran past the cursor and stalled."""
        await self.ensure(assigned)
        now = time.monotonic()
        for p in assigned:
            try:
                position = await asyncio.wait_for(self.positions.position(p), 2.0)
            except Exception:  # mid-rebalance: the partition may be gone; the next tick looks again
                continue
            if self.guard.stalled(p, position, now, STALL_AFTER_S) and self.guard.should_rewind(p, now, REWIND_EVERY_S):
                await self._rewind(p, f"consumer at {position}, but nothing after {self.guard.expected(p) - 1} arrived")

    async def _on_gap(self, partition: int, offset: int) -> bool:
        guard = self.guard
        expected = guard.expected(partition)
        if not guard.should_rewind(partition, time.monotonic(), REWIND_EVERY_S):
            return False
        try:
            first = await self.broker.first_offset_from(self.name, partition, expected)
        except Exception as exc:  # cannot tell: rewinding is always safe
            log.warning("ordering: could not probe %s/%d (%s); rewinding", self.name, partition, exc)
            first = None
        if first is not None and first >= offset:
            log.info("ordering: %s/%d has no records in [%d, %d) (transaction markers): going on", self.name, partition, expected, offset)
            guard.skip_to(partition, offset)
            return True
        await self._rewind(partition, f"delivered offset {offset} while {expected} was expected")
        return False

    async def _rewind(self, partition: int, why: str) -> None:
        """Seek the worker's consumer back to the cursor, so the missing records come again."""
        log.warning("ordering: %s/%d %s: rewinding", self.name, partition, why)
        if self._rewound is not None:
            self._rewound.inc()
        await self.positions.seek(partition, self.guard.expected(partition))

    def complete(self, last: dict[int, tuple[int, int]]) -> None:
        """The admitted records are processed (call once per :meth:`admit`, or :meth:`fail`)."""
        for p, (offset, epoch) in last.items():
            self.guard.complete(p, offset, epoch)
            self.failing_since.pop(p, None)
        self._release(last)

    def fail(self, last: dict[int, tuple[int, int]]) -> None:
        """Processing raised: the partitions restart from the committed offset (the next record
        is then a gap, and the consumer is rewound), so nothing is committed past them."""
        self.guard.forget(set(last))
        now = time.monotonic()
        for p in last:
            self.failing_since.setdefault(p, now)
        self._release(last)

    def restart_all(self) -> None:
        """Every partition restarts from its committed offset (a send of records already
        completed was not delivered); counted as failing until each completes a record again."""
        now = time.monotonic()
        for p in self.guard.partitions():
            self.failing_since.setdefault(p, now)
        self.guard.forget()

    def stuck_seconds(self, now: float | None = None) -> float:
        """How long the longest-failing partition of this source has gone without completing (0 = none)."""
        if not self.failing_since:
            return 0.0
        return (time.monotonic() if now is None else now) - min(self.failing_since.values())

    def _release(self, last: dict[int, tuple[int, int]]) -> None:
        if last:
            self._busy = max(0, self._busy - 1)
            if not self._busy:
                self.idle.set()


class OrderedSources:
    """Every ordered source of one worker, and their commits."""

    def __init__(self, app: faust.App, settings: Settings, metrics: Any = None) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.broker = BrokerView(settings)
        self.sources: dict[str, OrderedSource] = {}   # read by Faust agents, committed here
        self.own_sources: list[OrderedSource] = []      # read and committed by their own service
        # Called before each commit, before the producer flush: a stage that holds back records
        # covering processed offsets (the ingest stage's demand counts) sends them here.
        self.before_commit: list[Callable[[], Awaitable[Any]]] = []
        self._commit_lock = asyncio.Lock()

        @app.timer(settings.commit_interval_s)
        async def _commit_timer() -> None:
            if metrics is not None:
                for source in self.sources.values():
                    metrics.partition_stuck.labels(source.stage).set(source.stuck_seconds())
            await self.commit()
            try:
                await self.watch()
            except Exception as exc:  # the broker is away or we are stopping; the next tick looks again
                log.warning("ordering: watch skipped (%s: %s)", type(exc).__name__, exc)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
            # Let in-flight batches finish (bounded), so the commit covers them and the next owner
            # does not process them again; then commit while the partitions are still ours.
            waits = [asyncio.ensure_future(s.idle.wait()) for s in self.sources.values() if not s.idle.is_set()]
            if waits:
                _, late = await asyncio.wait(waits, timeout=max(1.0, settings.session_timeout_s / 2))
                for w in late:
                    w.cancel()
            await self.commit()
            for tp in revoked:
                source = self.sources.get(tp.topic)
                if source is not None:
                    source.guard.forget({tp.partition})
                    source.failing_since.pop(tp.partition, None)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _close(sender: Any, *args: Any, **kwargs: Any) -> None:
            await self.broker.close()

    def stuck_seconds(self) -> float:
        """The longest time any source partition has been failing without completing a record."""
        return max((s.stuck_seconds() for s in (*self.sources.values(), *self.own_sources)), default=0.0)

    def own(self, name: str, stage: str, positions: Positions, groups: Sequence[str]) -> OrderedSource:
        """A source read and committed by a service with its own consumer (streams/kafka/batchsource.py):
        guarded the same way, but neither committed nor watched here."""
        source = OrderedSource(self.app, name, stage, self.broker, self.metrics, positions, groups)
        self.own_sources.append(source)
        return source

    def topic(self, name: str, stage: str, **options: Any) -> tuple[faust.types.TopicT, OrderedSource]:
        source = self.sources[name] = OrderedSource(self.app, name, stage, self.broker, self.metrics)
        return self.app.topic(name, acks=False, **options), source

    async def watch(self) -> None:
        assignment = self.app.consumer.assignment()
        for name, source in self.sources.items():
            assigned = {tp.partition for tp in assignment if tp.topic == name}
            if assigned:
                await source.watch(assigned)

    async def commit(self) -> bool:
        """Flush the producer, then commit every guard's completed offsets."""
        async with self._commit_lock:
            offsets = {TP(name, p): o for name, s in self.sources.items() for p, o in s.guard.to_commit().items()}
            if not offsets:
                return True
            try:
                for send_held_back in self.before_commit:
                    await send_held_back()
                await self.app.producer.flush()
                assignment = self.app.consumer.assignment()
                offsets = {tp: o for tp, o in offsets.items() if tp in assignment}
                if not offsets or not await plain_commit(self.app, offsets):
                    return False
            except Exception:
                log.exception("ordering: commit failed; the records will be processed again")
                return False
            for tp, offset in offsets.items():
                self.sources[tp.topic].guard.committed(tp.partition, offset)
            return True
