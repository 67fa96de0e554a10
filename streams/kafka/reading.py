"""Reading a topic from its beginning to its current end, and measuring consumer-group lag."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka.client import admin_and_reader, admin_client, reader
from streams.kafka.topics import INPUT, TOPICS, group_offsets
from streams.settings import Settings, SettingsError

__all__ = ["read_to_end", "namespace_lag", "GroupLag", "partitions_of", "topic_partitions", "MissingTopicError"]


class MissingTopicError(SettingsError):
    """The topic to read does not exist (a wrong namespace, or no worker ever ran in it); one line."""


async def partitions_of(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the existing ``topics`` (a consumer only knows topics it subscribed to)."""
    if not topics:
        return []
    described = await admin.describe_topics(topics)
    return [TopicPartition(d["topic"], p["partition"]) for d in described if d["error_code"] == 0 for p in d["partitions"]]


async def topic_partitions(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """:func:`partitions_of` with an admin client of its own, opened and closed around the question."""
    admin = admin_client(settings)
    await admin.start()
    try:
        return await partitions_of(admin, topics)
    finally:
        await admin.close()


async def topic_exists(settings: Settings, topic: str) -> bool:
    """Whether ``topic`` exists (has partitions), asked without subscribing to it."""
    return bool(await topic_partitions(settings, [topic]))


async def read_to_end(settings: Settings, topic: str, timeout_s: float = 60.0, **reader_options: Any) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``topic`` up to the end offsets seen at the start (no consumer group).
    ``reader_options`` go to the consumer (larger fetches for a big changelog, for example).

    Raises :class:`MissingTopicError` when the topic does not exist (checked before a consumer is
    started: stopping one that was never assigned raised a bare CancelledError from aiokafka).
    """
    tps = await topic_partitions(settings, [topic])
    if not tps:
        raise MissingTopicError(f"topic {topic} does not exist (namespace {settings.namespace!r}: is it the right one, "
                                "and has a worker or `touchpoint send` created its topics?)")
    consumer = reader(settings, **{"auto_offset_reset": "earliest", **reader_options})
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end within {timeout_s:.0f}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()


class GroupLag(dict[str, int]):
    """Records behind per consumer group of the namespace."""

    @property
    def total(self) -> int:
        return sum(self.values())


async def namespace_lag(settings: Settings) -> GroupLag:
    """Records not yet processed by the namespace's worker groups, per group.

    The worker groups (Faust's, and the ingest service's on the input topic) count as behind on
    every topic they consume, including partitions they have never committed (so a group that
    has not started yet is behind, not idle).
    """
    async with admin_and_reader(settings) as (admin, consumer):
        existing = set(await admin.list_topics())
        consumed = [settings.topic(t.name) for t in TOPICS if t.consumed and settings.topic(t.name) in existing]
        tps = await partitions_of(admin, consumed)
        ends = await consumer.end_offsets(tps) if tps else {}
        input_topic = settings.topic(INPUT)
        workers = {settings.app_id: [tp for tp in tps if tp.topic != input_topic],
                   settings.ingest_group: [tp for tp in tps if tp.topic == input_topic]}
        groups = [g for g, *_ in await admin.list_consumer_groups() if g.startswith(settings.namespace + ".")]
        groups += [g for g in workers if g not in groups]
        lag = GroupLag()
        for group in groups:
            committed = await group_offsets(admin, group)
            behind = 0
            for tp in workers.get(group, committed):
                end = ends.get(tp)
                if end is None:
                    continue
                meta = committed.get(tp)
                behind += max(0, end - (meta.offset if meta is not None and meta.offset >= 0 else 0))
            lag[group] = behind
        return lag
