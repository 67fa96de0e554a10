"""Micro-benchmark of the Redis identity graph: worker CPU microseconds per event.

Measures ``time.process_time()`` of this Python process (the worker's share; Redis runs in its
own process) while resolving realistic traffic in batches of 500 through RedisIdentityGraph.
Target: <= 15 us/event. Usage:

    .venv/bin/python bench/identity_bench.py --redis redis://127.0.0.1:16499/0 [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid

from redis.asyncio import Redis

from streams.identity import IdentityRules, RedisIdentityGraph, ResolveRequest


def traffic(n_events: int, n_people: int, seed: int) -> list[ResolveRequest]:
    """Web/app/CRM-like events: mostly anonymous page views, some logins, some CRM records."""
    rng = random.Random(seed)
    out = []
    for i in range(n_events):
        p = rng.randrange(n_people)
        ids: list[tuple[str, str]] = [("anonymous_id", f"anon-{p}-{rng.randrange(3)}")]
        r = rng.random()
        if r < 0.5:
            ids.append(("device_id", f"dev-{p}-{rng.randrange(2)}"))
        if r < 0.15:
            ids.insert(0, ("user_id", f"user-{p}"))
        if r < 0.05:
            ids.append(("email", uuid.UUID(int=rng.getrandbits(128)).hex * 2))
        out.append(ResolveRequest(f"m-{seed}-{i}", f"touchpoints/{i % 8}/{i}", tuple(ids), 1_700_000_000_000 + i))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:16499/0")
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--people", type=int, default=20_000)
    args = ap.parse_args()
    redis = Redis.from_url(args.redis)
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    graph = RedisIdentityGraph(redis, ns, IdentityRules())
    warm = traffic(2_000, args.people, 1)
    for i in range(0, len(warm), args.batch):
        await graph.resolve_batch(warm[i:i + args.batch])
    reqs = traffic(args.events, args.people, 2)
    batches = [reqs[i:i + args.batch] for i in range(0, len(reqs), args.batch)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for b in batches:
        await graph.resolve_batch(b)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"events={len(reqs)} batch={args.batch} worker_cpu_us_per_event={cpu / len(reqs) * 1e6:.2f} "
          f"wall_us_per_event={wall / len(reqs) * 1e6:.2f} events_per_s={len(reqs) / wall:,.0f}")
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
