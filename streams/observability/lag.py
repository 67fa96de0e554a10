"""Consumer lag of the worker group, sampled every few seconds and exported as a gauge.

Each worker reports only the partitions assigned to it, so ``sum by (topic, partition)`` over
all workers counts every partition once and a rebalance moves series instead of duplicating
them. Lag is the broker's view: high watermark minus the group's committed offset, so a worker
that consumes but cannot commit shows up as lagging. Label values are the project's own topic
names and partition numbers only (bounded by ``TOPICS`` x ``partitions``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from streams.kafka.client import admin_client, reader
from streams.kafka.topics import TOPICS
from streams.settings import Settings

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["LagSampler", "LagGauge", "compute_lag", "register", "SAMPLE_INTERVAL_S"]

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 5.0  # half the usual 10-15 s scrape interval: every scrape sees a fresh value


def compute_lag(ends: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int | None],
                beginnings: Mapping[TopicPartition, int] | None = None) -> dict[TopicPartition, int]:
    """Records behind per partition: end offset minus committed offset, never negative.

    A partition the group never committed to is behind by everything still in the log (from its
    beginning offset, 0 if unknown), matching ``auto_offset_reset=earliest``.
    """
    out: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        done = committed.get(tp)
        if done is None or done < 0:
            done = (beginnings or {}).get(tp, 0)
        out[tp] = max(0, end - done)
    return out


class LagGauge:
    """Owns the ``touchpoint_consumer_lag`` series of this worker; drops series of partitions it lost."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self._shown: set[tuple[str, str]] = set()

    def publish(self, lag: Mapping[TopicPartition, int]) -> None:
        now = {(tp.topic, str(tp.partition)): value for tp, value in lag.items()}
        for labels, value in now.items():
            self.gauge.labels(*labels).set(value)
        # A partition moved to another worker: its series must go, or two workers would report it.
        for labels in self._shown - set(now):
            try:
                self.gauge.remove(*labels)
            except KeyError:
                pass
        self._shown = set(now)


@dataclass
class LagSampler:
    """Reads committed offsets and end offsets of the assigned partitions with its own clients.

    Own clients (an admin client and a group-less consumer) rather than Faust's consumer thread:
    the sample must not wait behind fetches, and must read what the broker has committed.
    """

    settings: Settings
    group: str
    _admin: AIOKafkaAdminClient | None = None
    _consumer: AIOKafkaConsumer | None = None

    def watched(self, assigned: Iterable[Any]) -> list[TopicPartition]:
        """The assigned partitions of the project's own topics (not changelogs, not Faust internals)."""
        ours = {self.settings.topic(t.name) for t in TOPICS}
        return sorted({TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in ours})

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = admin_client(self.settings, request_timeout_ms=10_000)
            consumer = reader(self.settings, request_timeout_ms=10_000)
            await asyncio.gather(admin.start(), consumer.start())
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def sample(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Lag of ``tps`` right now (one committed-offsets request, one list-offsets request)."""
        if not tps:
            return {}
        admin, consumer = await self._clients()
        meta = await admin.list_consumer_group_offsets(self.group, partitions=tps)
        committed = {tp: (m.offset if m is not None else None) for tp, m in meta.items()}
        ends = await consumer.end_offsets(tps)
        missing = [tp for tp in tps if committed.get(tp) is None or committed[tp] < 0]
        beginnings = await consumer.beginning_offsets(missing) if missing else {}
        return compute_lag(ends, committed, beginnings)

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if admin is not None:
            await admin.close()
        if consumer is not None:
            await consumer.stop()


def register(app: Any, ctx: WorkerContext) -> LagSampler:
    """Sample lag every :data:`SAMPLE_INTERVAL_S` on every worker (not only the leader)."""
    sampler = LagSampler(ctx.settings, ctx.settings.app_id)
    ingest = LagSampler(ctx.settings, ctx.settings.ingest_group)  # the input, read by the ingest service's own group
    gauge = LagGauge(ctx.metrics.consumer_lag)
    ctx.lag = sampler

    @app.timer(SAMPLE_INTERVAL_S, on_leader=False)
    async def _sample_lag() -> None:
        try:
            assigned = app.consumer.assignment() if app.consumer is not None else set()
            lag = await asyncio.wait_for(sampler.sample(sampler.watched(assigned)), SAMPLE_INTERVAL_S * 2)
            consumer = ctx.ingest_consumer()
            if consumer is not None:
                lag.update(await asyncio.wait_for(ingest.sample(ingest.watched(consumer.assignment())), SAMPLE_INTERVAL_S * 2))
        except Exception as exc:  # never let a slow or absent broker kill the worker's timer
            log.warning("consumer lag sample failed: %s", exc)
            await sampler.close()  # reconnect on the next tick
            await ingest.close()
            return
        gauge.publish(lag)

    @app.on_before_shutdown.connect
    async def _close_lag(sender: Any, *args: Any, **kwargs: Any) -> None:
        await sampler.close()
        await ingest.close()

    return sampler
