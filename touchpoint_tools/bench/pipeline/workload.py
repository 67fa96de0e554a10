"""The workload: the simulator's population (identifiers that merge, products, channels, the
crisis scenario's demand shifts), preloaded as fast as possible or offered at a fixed rate."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from streams.kafka.client import client_options
from streams.settings import Settings
from touchpoint_tools.simulate.traffic import default_start_ms, generate

__all__ = ["make_records", "preload", "offer"]


def make_records(events: int, people: int | None = None, seed: int = 7, scenario: str = "none",
                 rate: float = 15_000.0) -> list[bytes]:
    """``events`` encoded Segment events from a seeded population of about one person per 20 events.

    Event times are spaced as a live stream of ``rate`` events/s would be (ending about now), so
    demand buckets hold as many events as they would at that rate. No duplicates and no malformed
    records: every peer then sees exactly the same valid work.
    """
    spacing_ms = 1000.0 / rate
    people = people or max(200, events // 20)
    args = argparse.Namespace(events=events, people=people, seed=seed, scenario=scenario, duplicates=0.0, malformed=0.0,
                              spacing_ms=spacing_ms)
    return list(generate(args, default_start_ms(events, spacing_ms, int(time.time() * 1000))))


def _producer(settings: Settings, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True, linger_ms=linger_ms,
                            max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)


async def preload(settings: Settings, topic: str, records: Sequence[bytes], timeout_s: float = 300.0) -> float:
    """Publish every record (no key: the default partitioner spreads them); return the seconds taken."""
    producer = _producer(settings, linger_ms=20)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for raw in records:
            pending.append(await producer.send(topic, value=raw))
            if len(pending) >= 5000:
                await asyncio.wait_for(asyncio.gather(*pending), timeout_s)
                pending.clear()
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"preloading {topic} took more than {timeout_s:.0f}s")
        await asyncio.wait_for(asyncio.gather(*pending), timeout_s)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def offer(settings: Settings, topic: str, records: Sequence[bytes], rate: float,
                on_send: Callable[[int, float], None], tick_s: float = 0.005) -> tuple[int, float]:
    """Publish ``records`` at ``rate`` per second in ticks of ``tick_s``; ``on_send(index, t)`` gets each
    record's ``time.perf_counter()`` just before it is handed to the producer. Returns (sent, seconds)."""
    producer = _producer(settings, linger_ms=1)
    await producer.start()
    started = time.perf_counter()
    sent = 0
    pending = []
    try:
        while sent < len(records):
            due = min(len(records), int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                on_send(sent, time.perf_counter())
                pending.append(await producer.send(topic, value=records[sent]))
                sent += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            next_at = started + sent / rate
            await asyncio.sleep(max(0.0, min(tick_s, next_at - time.perf_counter())))
        await asyncio.wait_for(asyncio.gather(*pending), 60)
    finally:
        await producer.stop()
    return sent, time.perf_counter() - started
