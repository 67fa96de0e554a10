"""Two versions of resolve.lua on one Redis, batch by batch: Redis CPU microseconds per event of each.

On a shared machine the Redis CPU of one run drifts by +-20% with the load of its neighbours
(touchpoint_tools/bench/identity_bench.py measures a whole phase at a time), more than most
changes of the script. Here the same traffic goes to two graphs in two namespaces, one with this
tree's resolve.lua (``new``) and one with the script of ``--base-lua`` (``base``, e.g. main's),
batch after batch in alternating order, and Redis CPU (``INFO cpu``) is read around each batch,
so both see the same load. The Python side (packing, digests) is this tree's for both: the
comparison is of the scripts alone, and their ARGV layout must be the same. Reports per phase the
total per event of each and the median per-batch difference. Usage:

    .venv/bin/python -m touchpoint_tools.bench.identity_ab --redis redis://127.0.0.1:16499/0 \\
        --base-lua <main checkout>/streams/identity/lua/resolve.lua --dedup-shard-bits 11 --window-fill 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid
from pathlib import Path

from redis.asyncio import Redis

from streams.identity import IdentityRules, RedisIdentityGraph, ResolveRequest
from streams.identity.redis_graph import DEDUP_SHARD_BITS
from touchpoint_tools.bench.identity_bench import drop_namespace, fill_window, redis_cpu_s, traffic


async def measure_ab(graphs: list[RedisIdentityGraph], reqs: list[ResolveRequest], batch: int) -> list[list[float]]:
    """Redis CPU seconds of every batch, per graph; the graph that goes first alternates."""
    out: list[list[float]] = [[] for _ in graphs]
    for n, i in enumerate(range(0, len(reqs), batch)):
        b = reqs[i:i + batch]
        order = range(len(graphs)) if n % 2 == 0 else range(len(graphs) - 1, -1, -1)
        for g in order:
            c0 = await redis_cpu_s(graphs[g].redis)
            await graphs[g].resolve_batch(b)
            out[g].append(await redis_cpu_s(graphs[g].redis) - c0)
    return out


def report(phase: str, n: int, batch: int, per_batch: list[list[float]]) -> None:
    base, new = per_batch
    diff = statistics.median(x - y for x, y in zip(new, base, strict=True)) / batch * 1e6
    print(f"{phase:<7} events={n} base_redis_cpu_us_per_event={sum(base) / n * 1e6:.2f}"
          f" new_redis_cpu_us_per_event={sum(new) / n * 1e6:.2f} median_batch_diff_us_per_event={diff:+.2f}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:16499/0")
    ap.add_argument("--base-lua", type=Path, required=True, help="the resolve.lua to compare this tree's with")
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--dedup-shard-bits", type=int, default=DEDUP_SHARD_BITS)
    ap.add_argument("--base-dedup-shard-bits", type=int, default=None,
                    help="shard bits of the base graph (default: --dedup-shard-bits); its fill is scaled to as many ids")
    ap.add_argument("--window-fill", type=int, default=0,
                    help="digests per shard hash written into each older slice of the window first (default 0)")
    args = ap.parse_args()
    redis = Redis.from_url(args.redis)
    base_src = args.base_lua.read_text(encoding="utf-8")
    spaces = [f"ab-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    bits = [args.dedup_shard_bits if args.base_dedup_shard_bits is None else args.base_dedup_shard_bits, args.dedup_shard_bits]
    graphs = [RedisIdentityGraph(redis, ns, IdentityRules(), dedup_shard_bits=b, resolve_lua=src)
              for ns, b, src in zip(spaces, bits, (base_src, None), strict=True)]
    try:
        for g, b in zip(graphs, bits, strict=True):
            if args.window_fill > 0:  # the same number of ids per slice whatever the bits
                await fill_window(g, b, max(1, round(args.window_fill * 2 ** (args.dedup_shard_bits - b))), 9)
        n, b = args.events, args.batch
        report("cold", n, b, await measure_ab(graphs, traffic(n, args.people * 10, 1, 0.5), b))
        await measure_ab(graphs, traffic(args.people * 3, args.people, 2, 0.0), b)  # warm-up, not reported
        report("steady", n, b, await measure_ab(graphs, traffic(n, args.people, 3, 0.1), b))
        report("steady2", n, b, await measure_ab(graphs, traffic(n, args.people, 4, 0.1), b))
    finally:
        for ns in spaces:
            await drop_namespace(redis, ns)
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
