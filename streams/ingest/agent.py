"""The ingest agent: a thin loop feeding batches of raw records to :class:`IngestStage`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import faust

from streams.demand.dimensions import parse_dimensions, parse_measures
from streams.identity.data_keys import RedisKeyStore, RedisReadmitter
from streams.identity.sealing import AuditSealer
from streams.ingest.dlq import DeadLetter
from streams.ingest.eventtime import EventTimeWindow
from streams.ingest.stage import IngestStage, RawRecord
from streams.kafka import topics as T
from streams.profiles.bundle import key_partition
from streams.resilience import TRANSIENT

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]

log = logging.getLogger(__name__)


class ProducerSink:
    """Sends through the worker's producer (``app.producer``) rather than ``Topic.send``.

    Topic.send wraps every record in a FutureMessage and runs Faust's channel machinery; the
    producer call is the same aiokafka append without it. Delivery is still covered: every
    commit flushes this producer first (streams/kafka/ordering.py).
    """

    def __init__(self, app: faust.App, applied: str, dlq: str, demand: str, identity: str, partitions: int,
                 failures: Any = None, keys: str = "") -> None:
        self._app = app
        self._applied, self._dlq, self._demand, self._identity = applied, dlq, demand, identity
        self._keys = keys  # identity.keys: data keys of the sealed audit identifiers
        self._partitions = partitions  # of every topic of the namespace (ensure_topics checks it)
        self._failures = failures  # counter child: touchpoint_send_failures_total{kind="ingest"}
        self.undelivered = 0  # sends whose delivery failed since the last check (issue 21: never silent)

    async def _send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None, partition: int | None = None) -> None:
        fut = await self._app.producer.send(topic, key, value, partition=partition, timestamp=None, headers=headers)
        fut.add_done_callback(self._delivered)

    def _delivered(self, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        self.undelivered += 1
        if self._failures is not None:
            self._failures.inc()
        log.error("ingest: a send was not delivered (%s: %s); the batch will be processed again", type(fut.exception()).__name__, fut.exception())

    async def check(self, restart: Any) -> None:
        """Before each commit: flush, and if any send of this sink failed since the last check,
        restart the input partitions from their committed offsets (``restart()``) and refuse the
        commit, so the records are processed again (their events are redeliveries, not duplicates)."""
        await self._app.producer.flush()
        await asyncio.sleep(0)  # let the delivery callbacks of the flushed sends run
        if self.undelivered:
            n, self.undelivered = self.undelivered, 0
            restart()
            raise RuntimeError(f"{n} ingest sends not delivered; the input partitions restart from their commit")

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        await self._send(self._applied, key, value, partition=partition)

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self._send(self._dlq, None, letter.value, letter.headers)

    async def demand(self, key: bytes, value: bytes) -> None:
        await self._send(self._demand, key, value)

    async def data_key(self, key: bytes, value: bytes | None) -> None:
        await self._send(self._keys, key, value, partition=key_partition(key, self._partitions))

    async def identity_change(self, key: bytes, value: bytes) -> None:
        # The default partitioner's choice, from the cache instead of a murmur2 per record.
        await self._send(self._identity, key, value, partition=key_partition(key, self._partitions))


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Declare the ingest agent on ``app``; ``ctx`` is the worker's :class:`WorkerContext`."""
    s = ctx.settings
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    source, ordered = ctx.sources().topic(s.topic(T.INPUT), "ingest", **raw)
    sink = ProducerSink(app, s.topic(T.PROFILE_EVENTS), s.topic(T.DLQ), s.topic(T.DEMAND_COUNTS), s.topic(T.IDENTITY_CHANGES),
                        s.partitions, ctx.metrics.send_failures.labels("ingest"), keys=s.topic(T.IDENTITY_KEYS))
    sealer = AuditSealer(RedisKeyStore(ctx.identity.redis, s.namespace), s.pii_key, sink.data_key)
    stage = IngestStage(max_event_bytes=s.max_event_bytes, normalizer=ctx.normalizer, resolver=ctx.identity,
                        codec=ctx.dlq_codec, sink=sink, metrics=ctx.metrics, sealer=sealer,
                        readmitter=RedisReadmitter(ctx.identity.redis, s.namespace), demand_bucket_s=s.demand_bucket_s,
                        demand_dimensions=parse_dimensions(s.demand_dimensions),
                        demand_measures=parse_measures(s.demand_measures), demand_currency=s.demand_currency,
                        profile_partitions=s.partitions,
                        window=EventTimeWindow(s.event_max_future_s * 1000, s.event_max_past_s * 1000,
                                               ctx.metrics.event_time_corrected.labels("future")),
                        transient=TRANSIENT)
    ctx.ingest = stage
    ctx.sources().before_commit.append(stage.flush_demand)
    ctx.sources().before_commit.append(lambda: sink.check(ordered.restart_all))
    ctx.sources().before_commit.append(sealer.confirm)  # after the check: the new keys' sends were delivered

    # concurrency=1: one batch at a time, in order. The offsets committed are the ones the
    # ordered source saw complete (streams/kafka/ordering.py), after the producer flushed.
    @app.agent(source, name="ingest", concurrency=1)
    async def ingest(stream: faust.StreamT) -> None:
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            messages = [e.message for e in events]
            keep, last = await ordered.admit(messages)
            try:
                if keep:
                    await stage.process_batch([
                        RawRecord(m.value, m.topic, m.partition, m.offset, int(m.timestamp * 1000) if m.timestamp else None)
                        for m in (messages[i] for i in keep)
                    ])
            except BaseException:
                ordered.fail(last)
                raise
            ordered.complete(last)
