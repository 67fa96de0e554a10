"""The latency run of a bench: one worker, a fixed offered load, produce -> profile updated."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import orjson

from streams.kafka import topics as T
from touchpoint_tools.bench.pipeline import procstat
from touchpoint_tools.bench.pipeline.stats import percentile, rate
from touchpoint_tools.bench.pipeline.topics import Kafka
from touchpoint_tools.bench.pipeline.workload import make_records, offer

if TYPE_CHECKING:
    from touchpoint_tools.bench.pipeline.harness import Bench

__all__ = ["measure_latency"]


async def measure_latency(bench: Bench) -> dict[str, Any]:
    """p50/p99 produce -> profile updated at a fixed offered load, one ready worker (docs/performance.md)."""
    from streams.profiles.stage import message_digest

    o = bench.opts
    count = int(o.latency_rate * o.latency_seconds)
    records = make_records(count, seed=11, rate=o.latency_rate)
    settings = bench.fresh("lat")
    bench.log(f"[latency] 1 worker, {o.latency_rate:,.0f} ev/s for {o.latency_seconds:.0f}s")
    workers = await bench.start_workers(settings, 1, "lat")
    try:
        async with Kafka(settings) as k:
            topics = await k.topics(settings.namespace + ".")
            changelog = f"{settings.app_id}-profiles-changelog"
            mode = "profiles" if changelog in topics else "profile-events"
            observed = changelog if mode == "profiles" else settings.topic(T.PROFILE_EVENTS)
            tps = await k.partitions([observed])
        index: dict[str, int] = {}
        for i, raw in enumerate(records):
            mid = orjson.loads(raw)["messageId"]
            index[message_digest(mid) if mode == "profiles" else mid] = i
        sent_t: list[float] = [0.0] * count
        seen_t: list[float | None] = [None] * count
        from aiokafka import AIOKafkaConsumer

        from streams.kafka.client import client_options
        from streams.profiles.bundle import decoded_items

        consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, group_id=None,
                                    fetch_max_wait_ms=100, max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        done = asyncio.Event()

        def match(value: bytes, now: float) -> None:
            if mode == "profiles":
                start = value.find(b'"rc":[')
                if start < 0:
                    return
                end = value.find(b"]", start)
                for part in value[start + 6:end].split(b","):
                    i = index.get(part.strip(b'"').decode())
                    if i is not None and seen_t[i] is None:
                        seen_t[i] = now
            else:
                for _, item in decoded_items(None, value):  # ingest bundles profile-events
                    if not isinstance(item, dict) or "control" in item:
                        continue
                    i = index.get(item.get("message_id"))
                    if i is not None and seen_t[i] is None:
                        seen_t[i] = now

        async def observe() -> None:
            while not done.is_set():
                batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                now = time.perf_counter()
                for recs in batches.values():
                    for r in recs:
                        if r.value:
                            match(r.value, now)

        observer = asyncio.create_task(observe())
        try:
            cpu0 = {"worker0": procstat.cpu_seconds(workers[0].pid)}
            sent, seconds = await offer(settings, settings.topic(T.INPUT), records, o.latency_rate,
                                        lambda i, t: sent_t.__setitem__(i, t))
            cpu1 = {"worker0": procstat.cpu_seconds(workers[0].pid)}
            deadline = time.monotonic() + o.latency_drain_s
            while time.monotonic() < deadline and None in seen_t:
                await asyncio.sleep(0.2)
        finally:
            done.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(observer, 5)
            await consumer.stop()
    finally:
        for w in workers:
            w.stop()
    t0, t_end = sent_t[0], time.perf_counter()
    # An event never seen counts with the time it waited until the end (a lower bound), so a
    # pipeline that cannot keep up gets a p99 that says so instead of none at all.
    matched = [(seen - sent) * 1000 for sent, seen in zip(sent_t, seen_t, strict=True)
               if seen is not None and sent - t0 >= o.latency_warmup_s]
    censored = [(t_end - sent) * 1000 for sent, seen in zip(sent_t, seen_t, strict=True)
                if seen is None and sent - t0 >= o.latency_warmup_s]
    lat = matched + censored
    worker_cpu = None if cpu0["worker0"] is None or cpu1["worker0"] is None else cpu1["worker0"] - cpu0["worker0"]
    return {
        "observed": "profile updated (profiles changelog, message-id digest)" if mode == "profiles"
                    else "applied record on profile-events (no profiles stage)",
        "offered_per_s": o.latency_rate, "achieved_per_s": rate(sent, seconds), "seconds": seconds,
        "warmup_s": o.latency_warmup_s, "samples": len(matched), "unmatched": len(censored),
        "lower_bound": bool(censored),
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
        "p999_ms": percentile(lat, 99.9), "max_ms": max(lat) if lat else None,
        "worker_cpu_s_while_offered": worker_cpu,
    }
