"""Micro-benchmark of the Redis identity graph: worker CPU microseconds per event.

Measures ``time.process_time()`` of this Python process (the worker's share; Redis runs in its
own process) while resolving realistic traffic in batches of 500 through RedisIdentityGraph.
Target: <= 15 us/event. Prints a cold figure (mostly new identifiers: creates, merges, audit
records) and a steady-state one (known population, 10% new anonymous ids). Usage:

    .venv/bin/python bench/identity_bench.py --redis redis://127.0.0.1:16499/0 [--events 50000]
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


async def measure(graph: RedisIdentityGraph, reqs: list[ResolveRequest], batch: int) -> tuple[float, float]:
    """(worker CPU us/event, wall us/event) over batches of ``batch`` events."""
    batches = [reqs[i:i + batch] for i in range(0, len(reqs), batch)]
    # The generated traffic is bench scaffolding, not worker heap: keep the collector from
    # rescanning it on every generation-2 pass (a worker holds one batch at a time).
    gc.collect()
    gc.freeze()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for b in batches:
        await graph.resolve_batch(b)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gc.unfreeze()
    return cpu / len(reqs) * 1e6, wall / len(reqs) * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:16499/0")
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--people", type=int, default=20_000)
    args = ap.parse_args()
    redis = Redis.from_url(args.redis)
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    graph = RedisIdentityGraph(redis, ns, IdentityRules())
    try:
        # cold: most events bring identifiers never seen before (profiles get created and merged)
        cpu, wall = await measure(graph, traffic(args.events, args.people * 10, 1, 0.5), args.batch)
        print(f"cold   events={args.events} batch={args.batch} worker_cpu_us_per_event={cpu:.2f} wall_us_per_event={wall:.2f}")
        # steady state: a known population, 10% of events carry a new anonymous id
        await measure(graph, traffic(args.people * 3, args.people, 2, 0.0), args.batch)  # warm-up, not reported
        cpu, wall = await measure(graph, traffic(args.events, args.people, 3, 0.1), args.batch)
        print(f"steady events={args.events} batch={args.batch} worker_cpu_us_per_event={cpu:.2f} wall_us_per_event={wall:.2f}")
    finally:
        cursor = 0  # clean up our namespace
        while True:
            cursor, keys = await redis.scan(cursor, match=ns + ":*", count=5000)
            if keys:
                await redis.unlink(*keys)
            if cursor == 0:
                break
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
