"""Kafka-side measurements: end offsets over time, record counts, changelog sizes, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition

from streams.kafka.client import admin_client, reader
from streams.kafka.reading import partitions_of, read_to_end
from streams.settings import Settings

__all__ = ["Kafka", "OffsetSamples", "ChangelogStats", "delete_namespace", "log_batches"]


@dataclass
class OffsetSamples:
    """(time, sum of end offsets) samples of a set of partitions."""

    times: list[float] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)

    def add(self, t: float, total: int) -> None:
        self.times.append(t)
        self.totals.append(total)

    def window(self) -> tuple[float, float] | None:
        """(start, end) of the growth: midpoints between the last sample before the first change
        and the first change, and between the last change and the sample before it.

        >>> s = OffsetSamples([0.0, 1.0, 2.0, 3.0, 4.0], [0, 0, 5, 9, 9])
        >>> s.window()
        (1.5, 2.5)
        """
        if len(self.totals) < 2 or self.totals[-1] == self.totals[0]:
            return None
        base, final = self.totals[0], self.totals[-1]
        first = next(i for i, v in enumerate(self.totals) if v != base)
        last = next(i for i, v in enumerate(self.totals) if v == final)
        start = (self.times[first - 1] + self.times[first]) / 2
        end = (self.times[last - 1] + self.times[last]) / 2 if last > 0 else self.times[last]
        return start, end


@dataclass
class ChangelogStats:
    records: int = 0
    keys: int = 0
    live_keys: int = 0
    live_bytes: int = 0  # key + value bytes of the newest value of every live key

    @property
    def bytes_per_key(self) -> float | None:
        return self.live_bytes / self.live_keys if self.live_keys else None


class Kafka:
    """An admin client and a group-less consumer, for the bench's own reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = admin_client(settings)
        self.consumer = reader(settings)

    async def __aenter__(self) -> Kafka:
        await asyncio.gather(self.admin.start(), self.consumer.start())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(self.admin.close(), self.consumer.stop(), return_exceptions=True)

    async def topics(self, containing: str) -> list[str]:
        return sorted(t for t in await self.admin.list_topics() if containing in t)

    async def partitions(self, topics: list[str]) -> list[TopicPartition]:
        return await partitions_of(self.admin, topics)

    async def ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return await self.consumer.end_offsets(tps) if tps else {}

    async def record_counts(self, topics: list[str]) -> dict[str, int]:
        """Records in each topic (end - beginning offset: no compaction has run on a fresh topic)."""
        tps = await self.partitions(topics)
        if not tps:
            return {}
        ends = await self.consumer.end_offsets(tps)
        begins = await self.consumer.beginning_offsets(tps)
        out = dict.fromkeys(topics, 0)
        for tp in tps:
            out[tp.topic] += ends[tp] - begins[tp]
        return out

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        offsets = await self.admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items() if meta is not None and meta.offset >= 0}

    async def group_caught_up(self, group: str, must_cover: list[TopicPartition]) -> bool:
        """Every partition the group committed is at its end, and ``must_cover`` are all committed to the end."""
        committed = await self.committed(group)
        tps = list({*committed, *must_cover})
        ends = await self.ends(tps)
        return all(committed.get(tp, 0) >= ends[tp] for tp in tps)

    async def changelog_stats(self, topic: str, is_dead: object = None, timeout_s: float = 120.0) -> ChangelogStats:
        """Read a table changelog from the start; keep the newest value per key."""
        tps = await self.partitions([topic])
        stats = ChangelogStats()
        if not tps:
            return stats
        newest: dict[bytes, int] = {}
        async for r in read_to_end(self.settings, topic, timeout_s,
                                   max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024):
            stats.records += 1
            key = r.key or b""
            dead = r.value is None or (callable(is_dead) and is_dead(r.value))
            newest[key] = -1 if dead else len(key) + len(r.value)
        stats.keys = len(newest)
        live = [n for n in newest.values() if n >= 0]
        stats.live_keys = len(live)
        stats.live_bytes = sum(live)
        return stats


async def delete_namespace(settings: Settings, timeout_s: float = 60.0) -> None:
    """Delete every topic whose name contains the namespace, and the namespace's Redis keys."""
    from redis.asyncio import Redis

    ns = settings.namespace
    async with Kafka(settings) as k:
        topics = await k.topics(ns)
        if topics:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(k.admin.delete_topics(topics, timeout_ms=int(timeout_s * 1000)), timeout_s)
    redis = Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        deadline = time.monotonic() + timeout_s
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{ns}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.unlink(*batch)
                batch.clear()
            if time.monotonic() > deadline:
                break
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


def log_batches(data_dir: Path, topic: str) -> tuple[int, int]:
    """(record batches, records) in the broker's log segments of ``topic`` (read-only, local broker).

    Kafka's v2 batch header: baseOffset int64, batchLength int32, ..., recordsCount int32 at byte
    57; a batch occupies 12 + batchLength bytes. Each batch is what one producer sent for one
    partition in one request, so records per batch measures how well the producers batch.
    """
    batches = records = 0
    for part in data_dir.glob(f"{topic}-*"):
        name, _, num = part.name.rpartition("-")
        if name != topic or not num.isdigit():
            continue
        for segment in part.glob("*.log"):
            with contextlib.suppress(OSError):
                data = segment.read_bytes()
                pos = 0
                while pos + 61 <= len(data):
                    length = struct.unpack_from(">i", data, pos + 8)[0]
                    if length <= 0 or pos + 12 + length > len(data):
                        break
                    batches += 1
                    records += struct.unpack_from(">i", data, pos + 57)[0]
                    pos += 12 + length
    return batches, records
