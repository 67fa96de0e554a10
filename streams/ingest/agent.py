"""The ingest agent: a thin loop feeding batches of raw records to :class:`IngestStage`."""

from __future__ import annotations

from typing import Any

import faust

from streams.demand.dimensions import parse_dimensions
from streams.ingest.dlq import DeadLetter
from streams.ingest.stage import IngestStage, RawRecord
from streams.kafka import topics as T

__all__ = ["register"]


class FaustSink:
    def __init__(self, applied_topic: faust.types.TopicT, dlq_topic: faust.types.TopicT, demand_topic: faust.types.TopicT,
                 identity_topic: faust.types.TopicT) -> None:
        self._applied = applied_topic
        self._dlq = dlq_topic
        self._demand = demand_topic
        self._identity = identity_topic

    async def applied(self, key: bytes, value: bytes) -> None:
        await self._applied.send(key=key, value=value)

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self._dlq.send(value=letter.value, headers=letter.headers)

    async def demand(self, key: bytes, value: bytes) -> None:
        await self._demand.send(key=key, value=value)

    async def identity_change(self, key: bytes, value: bytes) -> None:
        await self._identity.send(key=key, value=value)


def register(app: faust.App, ctx: Any) -> None:
    """Declare the ingest agent on ``app``; ``ctx`` is the worker's :class:`WorkerContext`."""
    s = ctx.settings
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    source, ordered = ctx.extras["ordered"].topic(s.topic(T.INPUT), "ingest", **raw)
    sink = FaustSink(app.topic(s.topic(T.PROFILE_EVENTS), **raw), app.topic(s.topic(T.DLQ), **raw),
                     app.topic(s.topic(T.DEMAND_COUNTS), **raw), app.topic(s.topic(T.IDENTITY_CHANGES), **raw))
    stage = IngestStage(max_event_bytes=s.max_event_bytes, normalizer=ctx.normalizer, resolver=ctx.identity,
                        codec=ctx.dlq_codec, sink=sink, metrics=ctx.metrics, demand_bucket_s=s.demand_bucket_s,
                        demand_dimensions=parse_dimensions(s.demand_dimensions))
    ctx.ingest = stage

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
