"""Micro-benchmark of the Redis identity graph: worker and Redis CPU microseconds per event.

Measures ``time.process_time()`` of this Python process (the worker's share) while resolving
realistic traffic in batches of 500 through RedisIdentityGraph, and the CPU the Redis server
spent meanwhile (``used_cpu_user + used_cpu_sys`` of ``INFO cpu``: the whole server, so use a
Redis nobody else is loading), and the wall time per batch (what an ingest batch waits).
Target: <= 15 us/event of worker CPU. Prints a cold figure (mostly new identifiers: creates,
merges, audit records) and a steady-state one (known population, 10% new anonymous ids), twice:
``steady2`` is the same traffic once the keyspace has stopped doubling (see main).
``--commandstats`` also prints where Redis spent the time (INFO commandstats, reset per phase;
commands run inside the scripts are counted too). ``--window-fill N`` first writes N random digests
into every shard hash of the dedup window's older slices, as a Redis running for a whole window
holds them (without it those reads hit missing keys, which cost a fraction of a full hash's scan).
Usage:

    .venv/bin/python touchpoint_tools/bench/identity_bench.py --redis redis://127.0.0.1:16499/0 [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import random
import time
import uuid

from redis.asyncio import Redis

from streams.identity import IdentityRules, RedisIdentityGraph, ResolveRequest
from streams.identity import dedup_window as W
from streams.identity.redis_graph import DEDUP_SHARD_BITS


def person_ids(p: int, rng: random.Random, fresh: bool) -> list[tuple[str, str]]:
    """Identifiers one event of person ``p`` carries; ``fresh`` = a never-seen anonymous id."""
    anon = f"anon-{p}-new-{rng.getrandbits(48):x}" if fresh else f"anon-{p}-{rng.randrange(3)}"
    ids: list[tuple[str, str]] = [("anonymous_id", anon)]
    r = rng.random()
    if r < 0.5:
        ids.append(("device_id", f"dev-{p}-{rng.randrange(2)}"))
    if r < 0.15:
        ids.insert(0, ("user_id", f"user-{p}"))
    if r < 0.05:
        ids.append(("email", hashlib.sha256(f"e{p}".encode()).hexdigest()))  # ingest hands us keyed hashes
    return ids


def traffic(n_events: int, n_people: int, seed: int, fresh_share: float) -> list[ResolveRequest]:
    """Web/app/CRM-like events: mostly anonymous page views, some logins, some CRM records."""
    rng = random.Random(seed)
    return [ResolveRequest(f"m-{seed}-{i}", f"touchpoints/{i % 8}/{i}",
                           tuple(person_ids(rng.randrange(n_people), rng, rng.random() < fresh_share)),
                           1_700_000_000_000 + i)
            for i in range(n_events)]


async def redis_cpu_s(redis: Redis) -> float:
    """CPU seconds the Redis server has used so far (user + sys, all its threads)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(graph: RedisIdentityGraph, reqs: list[ResolveRequest], batch: int) -> tuple[float, float, float]:
    """(worker CPU us/event, wall us/event, Redis CPU us/event) over batches of ``batch`` events."""
    batches = [reqs[i:i + batch] for i in range(0, len(reqs), batch)]
    # The generated traffic is bench scaffolding, not worker heap: keep the collector from
    # rescanning it on every generation-2 pass (a worker holds one batch at a time).
    gc.collect()
    gc.freeze()
    rcpu0 = await redis_cpu_s(graph.redis)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for b in batches:
        await graph.resolve_batch(b)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rcpu = await redis_cpu_s(graph.redis) - rcpu0
    gc.unfreeze()
    return cpu / len(reqs) * 1e6, wall / len(reqs) * 1e6, rcpu / len(reqs) * 1e6


async def fill_window(graph: RedisIdentityGraph, shard_bits: int, per_hash: int, seed: int) -> None:
    """``per_hash`` random digests in every shard hash of the SLICES slices before the current one
    (by Redis's clock), tag ``0/0``, each hash expiring as resolve.lua would expire it."""
    rng = random.Random(seed)
    slice_s = W.slice_seconds(graph.dedup_window_s)
    now = int((await graph.redis.time())[0])
    cur = W.slice_of(now, slice_s)
    for s in range(cur - W.SLICES, cur):
        pipe = graph.redis.pipeline(transaction=False)
        for shard in range(2 ** shard_bits):
            key = graph.keys.window(s, shard)
            pipe.hset(key, mapping={rng.randbytes(W.FIELD_BYTES): b"0/0" for _ in range(per_hash)})
            pipe.expireat(key, W.expires_at(s, slice_s))
        await pipe.execute()


async def drop_namespace(redis: Redis, ns: str) -> None:
    """Unlink every key of the benchmark's namespace ``ns``."""
    cursor = 0
    while True:
        cursor, keys = await redis.scan(cursor, match=ns + ":*", count=5000)
        if keys:
            await redis.unlink(*keys)
        if cursor == 0:
            break


async def command_stats(redis: Redis, n_events: int) -> str:
    """Top commands by total Redis time since the last CONFIG RESETSTAT, per event."""
    stats = await redis.info("commandstats")
    rows = sorted(((k.removeprefix("cmdstat_"), v) for k, v in stats.items()), key=lambda kv: -kv[1]["usec"])
    return "\n".join(f"    {name:<12} calls/event={v['calls'] / n_events:6.2f} us/event={v['usec'] / n_events:7.2f}"
                     f" us/call={v['usec_per_call']:.2f}" for name, v in rows[:12])


def report(phase: str, n: int, batch: int, cpu: float, wall: float, rcpu: float) -> None:
    print(f"{phase:<7} events={n} batch={batch} worker_cpu_us_per_event={cpu:.2f} wall_us_per_event={wall:.2f}"
          f" redis_cpu_us_per_event={rcpu:.2f} wall_ms_per_batch={wall * batch / 1000:.2f}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:16499/0")
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--events-per-call", type=int, default=None, help="events per EVALSHA (default: the graph's)")
    ap.add_argument("--commandstats", action="store_true", help="print INFO commandstats per phase (runs CONFIG RESETSTAT)")
    ap.add_argument("--dedup-shard-bits", type=int, default=None,
                    help="shard bits of the dedup window (default: the graph's; the run writes ~5 x --events ids)")
    ap.add_argument("--window-fill", type=int, default=0,
                    help="digests per shard hash written into each older slice of the window first (default 0)")
    args = ap.parse_args()
    redis = Redis.from_url(args.redis)
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    graph = RedisIdentityGraph(redis, ns, IdentityRules(),
                               **({} if args.events_per_call is None else {"events_per_call": args.events_per_call}),
                               **({} if args.dedup_shard_bits is None else {"dedup_shard_bits": args.dedup_shard_bits}))
    try:
        if args.window_fill > 0:
            bits = DEDUP_SHARD_BITS if args.dedup_shard_bits is None else args.dedup_shard_bits
            await fill_window(graph, bits, args.window_fill, 9)
        # cold: most events bring identifiers never seen before (profiles get created and merged)
        if args.commandstats:
            await redis.config_resetstat()
        report("cold", args.events, args.batch, *await measure(graph, traffic(args.events, args.people * 10, 1, 0.5), args.batch))
        if args.commandstats:
            print(await command_stats(redis, args.events))
        # steady state: a known population, 10% of events carry a new anonymous id
        await measure(graph, traffic(args.people * 3, args.people, 2, 0.0), args.batch)  # warm-up, not reported
        if args.commandstats:
            await redis.config_resetstat()
        report("steady", args.events, args.batch, *await measure(graph, traffic(args.events, args.people, 3, 0.1), args.batch))
        if args.commandstats:
            print(await command_stats(redis, args.events))
        # the same again: on an empty Redis the first steady pass usually includes a doubling of
        # the keyspace table (Redis rehashes ~500k keys during it, a large share of its CPU);
        # a long-running Redis (keys expiring as fast as they come) rarely pays that
        if args.commandstats:
            await redis.config_resetstat()
        report("steady2", args.events, args.batch, *await measure(graph, traffic(args.events, args.people, 4, 0.1), args.batch))
        if args.commandstats:
            print(await command_stats(redis, args.events))
    finally:
        await drop_namespace(redis, ns)
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
