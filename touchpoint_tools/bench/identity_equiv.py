"""Two versions of resolve.lua given the same traffic: the replies and the whole Redis state must be equal.

Runs four rounds of 500 events (a mix of the bench's traffic, repeated message ids with the same
claim and client duplicates with another claim) through a graph with this tree's resolve.lua and
one with ``--base-lua``, in two namespaces, each round in the same slice of a 40 s dedup window
(10 s slices) and after the 2 s replay tier has expired, so the window's older slices answer too.
Then compares every reply and every key (type, encoding, value with hash field order, expiry).
Exit status 1 when they differ. Usage:

    .venv/bin/python -m touchpoint_tools.bench.identity_equiv --redis redis://127.0.0.1:16499/0 \\
        --base-lua <main checkout>/streams/identity/lua/resolve.lua
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from streams.identity import IdentityRules, RedisIdentityGraph, ResolveRequest
from touchpoint_tools.bench.identity_bench import traffic


async def dump(r: Redis, ns: str) -> dict[str, Any]:
    """Every key of a namespace (name without it) -> (type, encoding, value, expiry time)."""
    out: dict[str, Any] = {}
    async for k in r.scan_iter(match=ns + ":*", count=5000):
        t = (await r.type(k)).decode()
        v: Any
        if t == "string":
            v = await r.get(k)
        elif t == "hash":
            v = tuple((await r.hgetall(k)).items())  # in the hash's own order
        elif t == "list":
            v = tuple(await r.lrange(k, 0, -1))
        elif t == "set":
            v = tuple(sorted(await r.smembers(k)))
        else:
            v = t
        out[k.decode()[len(ns):]] = (t, await r.object("encoding", k), v, await r.execute_command("EXPIRETIME", k))
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:16499/0")
    ap.add_argument("--base-lua", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    r = Redis.from_url(args.redis)
    spaces = [f"eq-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    rules = IdentityRules(supernode_max_merges=3)
    graphs = [RedisIdentityGraph(r, ns, rules, dedup_ttl_s=2, dedup_window_s=40, dedup_shard_bits=4, resolve_lua=src)
              for ns, src in zip(spaces, (args.base_lua.read_text(encoding="utf-8"), None), strict=True)]
    rng = random.Random(args.seed)
    reqs = traffic(6000, 800, args.seed, 0.3)
    replies: list[list[tuple[str, str | None]]] = [[], []]
    try:
        for _ in range(4):
            batch = []
            for _ in range(500):
                q = reqs[rng.randrange(len(reqs))]
                if rng.random() < 0.3:  # a client duplicate: the same id under another claim
                    q = ResolveRequest(q.message_id, q.claim + "x", q.identifiers, q.ts_ms)
                batch.append(q)
            await asyncio.sleep(10 - time.time() % 10 + 0.05)  # both graphs in one 10 s slice
            for i, g in enumerate(graphs):
                replies[i] += [(x.outcome, x.profile_id) for x in await g.resolve_batch(batch)]
            await asyncio.sleep(2.1)  # the replay tier forgets this round
        d0, d1 = await dump(r, spaces[0]), await dump(r, spaces[1])
        diff = sorted(k for k in set(d0) | set(d1) if d0.get(k) != d1.get(k))
        outcomes = {o: sum(1 for x, _ in replies[0] if x == o) for o, _ in replies[0]}
        print(f"replies equal: {replies[0] == replies[1]} ({len(replies[0])}, {outcomes}); keys equal: {not diff}"
              f" ({len(d0)} keys, {sum(':dw:' in ':' + k for k in d0)} window hashes)")
        for k in diff[:5]:
            print(f"  differs: {k}")
        return 0 if replies[0] == replies[1] and not diff else 1
    finally:
        for ns in spaces:
            async for k in r.scan_iter(match=ns + ":*", count=5000):
                await r.unlink(k)
        await r.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
