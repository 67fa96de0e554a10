"""The ingest wiring: the input topic consumed in batches by a Faust-managed service with its
own consumer (streams/kafka/batchsource.py), each batch fed to :class:`IngestStage`, its outputs
produced in batches per topic and partition (streams/kafka/batches.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import faust

from streams.demand.dimensions import parse_dimensions, parse_measures
from streams.identity.data_keys import RedisKeyStore, RedisReadmitter
from streams.identity.sealing import AuditSealer
from streams.ingest.dlq import DeadLetter
from streams.ingest.eventtime import EventTimeWindow
from streams.ingest.stage import IngestStage, RawRecord
from streams.kafka import topics as T
from streams.kafka.batches import BatchProducer
from streams.kafka.batchsource import BatchSource, ConsumerPositions, Undelivered
from streams.kafka.client import group_consumer
from streams.kafka.delivery import aiokafka_producer
from streams.resilience import TRANSIENT

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register", "BatchSink", "delivery_check"]

log = logging.getLogger(__name__)


class BatchSink:
    """The stage's :class:`~streams.ingest.stage.Sink` on a :class:`BatchProducer`: every output
    record is appended to its topic-partition's batch (no await, no future per record); the
    service sends the batches after each input batch and before each commit."""

    def __init__(self, batches: BatchProducer, applied: str, dlq: str, demand: str, identity: str, keys: str) -> None:
        self.batches = batches
        self._applied, self._dlq, self._demand, self._identity = applied, dlq, demand, identity
        self._keys = keys  # identity.keys: data keys of the sealed audit identifiers

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.batches.append(self._applied, key, value, partition)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.batches.append(self._dlq, None, letter.value, headers=letter.headers)

    async def demand(self, key: bytes, value: bytes) -> None:
        self.batches.append(self._demand, key, value)  # murmur2 of the key, as the default partitioner

    async def data_key(self, key: bytes, value: bytes | None) -> None:
        self.batches.append(self._keys, key, value)  # sent with the batch, before the commit marks it published

    async def identity_change(self, key: bytes, value: bytes) -> None:
        self.batches.append(self._identity, key, value)

    def delivered(self) -> None:
        """After the flush before a commit: raises :class:`Undelivered` if a batch did not land."""
        n, _ = self.batches.take_failures()
        if n:
            raise Undelivered(f"{n} ingest records not delivered")


def delivery_check(sink: BatchSink, sealer: AuditSealer) -> Callable[[], None]:
    """``sink.delivered``, and when a send was lost the sealer forgets which data keys it sent
    since the last commit (one of them may be among the lost): the batches processed again
    publish them again."""

    def delivered() -> None:
        try:
            sink.delivered()
        except Undelivered:
            sealer.forget()
            raise

    return delivered


def register(app: faust.App, ctx: WorkerContext) -> IngestStage:
    """Build the ingest stage and its batch service on ``app``; ``ctx`` is the worker's context."""
    s = ctx.settings
    topic = s.topic(T.INPUT)  # created with the others by the worker command (kafka/topics.py); no Faust agent reads it
    batches = BatchProducer(lambda: aiokafka_producer(app), s.partitions, s.max_record_bytes, ctx.metrics.send_failures.labels("ingest"))
    sink = BatchSink(batches, s.topic(T.PROFILE_EVENTS), s.topic(T.DLQ), s.topic(T.DEMAND_COUNTS), s.topic(T.IDENTITY_CHANGES),
                     s.topic(T.IDENTITY_KEYS))
    sealer = AuditSealer(RedisKeyStore(ctx.identity.redis, s.namespace), s.pii_key, sink.data_key, once_per_commit=True)
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

    def consumer() -> Any:
        return group_consumer(s, group_id=s.ingest_group, max_poll_records=s.batch_size,
                              session_timeout_ms=int(s.session_timeout_s * 1000),
                              heartbeat_interval_ms=int(max(1.0, s.session_timeout_s / 5) * 1000),
                              rebalance_timeout_ms=int(max(30.0, s.session_timeout_s * 3) * 1000))

    # Resumes at its group's commit, else (an upgrade) where Faust's group had committed the input.
    positions = ctx.ingest_positions = ConsumerPositions(topic)
    ordered = ctx.sources().own(topic, "ingest", positions, (s.ingest_group, s.app_id))

    async def process(records: Sequence[Any]) -> None:
        await stage.process_batch([RawRecord(r.value, r.topic, r.partition, r.offset, r.timestamp) for r in records])
        await batches.send()  # every output of the batch, one send per topic-partition

    async def flush() -> None:
        await app.producer.flush()

    async def send_held_back() -> None:
        await stage.flush_demand()
        await batches.send()

    @app.service
    class IngestService(BatchSource):
        """The ingest input in batches (streams/kafka/batchsource.py), started with the worker."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(consumer=consumer, source=ordered, batch_size=s.batch_size, commit_interval_s=s.commit_interval_s,
                             hand_over_s=max(1.0, s.session_timeout_s / 2), process=process, flush=flush,
                             before_commit=[send_held_back], delivered=delivery_check(sink, sealer),
                             after_delivered=[sealer.confirm], **kwargs)  # data keys published: their sends landed

    return stage
