"""Capacity of the identity graph in Redis: bytes per dedup key and per identity key, measured.

    .venv/bin/python touchpoint_tools/bench/redis_capacity.py [--events 50000] [--sample 2000]

Resolves ``--events`` events of the bench workload (``touchpoint_tools.bench.pipeline.workload.make_records``:
the simulator's people, about one per 20 events) through :class:`RedisIdentityGraph` in batches
of 500, as ingest does, in a fresh namespace of the Redis the settings point at
(``TOUCHPOINT_REDIS_URL``; run it with your own ``TOUCHPOINT_NAMESPACE``), then prints per key
family (``dedup:``, ``dres:``, ``id:``, ``p:``, ``pm:``, ...): keys, keys per event, and bytes
per key by ``MEMORY USAGE`` (sampled, the key's own allocation incl. its dict entry) and the
growth of ``used_memory`` over the run divided by the keys written (what Redis really grew by,
incl. the expires dict and allocator rounding; other clients of a shared Redis add noise).
The dedup window tier (``dw:`` hashes, streams/identity/dedup_window.py) is written with
``--shard-bits`` (default: the fewest bits that keep ``--events`` ids at most 128 per hash, i.e.
hashes as full as a production slice's with TOUCHPOINT_DEDUP_SHARD_BITS sized by
``dedup_window.shard_bits_for``); its line gives bytes per id (MEMORY USAGE of the hashes / ids).
Then (``--formats``) the same for the dedup layouts, 100,000 ids each, by ``used_memory`` growth:
the replay tier's string key with a TTL (``dedup:<message id>``, the only layout before the window
tier, then kept 7 days), and the window tier exactly as resolve.lua writes it (10-byte digest ->
``partition/offset``, one EXPIREAT per hash) at 100 and at 64 ids per hash (a production slice
holds 64-128 per hash once full).
The namespace is deleted at the end. docs/performance.md, "Capacity", turns these into the table.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter, defaultdict

from redis.asyncio import Redis

from streams.events.model import Touchpoint, dedup_id
from streams.identity import RedisIdentityGraph, ResolveRequest
from streams.identity import dedup_window as W
from streams.identity.rules_file import rules_from_settings
from streams.ingest.decode import decode
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.settings import Settings
from touchpoint_tools.bench.pipeline.workload import make_records


def requests_of(records: list[bytes], settings: Settings) -> list[ResolveRequest]:
    normalizer = Normalizer(PiiHasher(settings.pii_key), settings.default_phone_region, settings.max_clock_skew_s * 1000)
    now = time.time_ns() // 1_000_000
    out = []
    for i, raw in enumerate(records):
        event = decode(raw, settings.max_event_bytes)
        tp = normalizer.normalize(event, now) if isinstance(event, dict) else event
        if isinstance(tp, Touchpoint):
            out.append(ResolveRequest(dedup_id(tp.message_id, event.get("sourceId")), f"bench.touchpoints/{i % 4}/{i}",  # type: ignore[union-attr]
                                      tp.identifiers, tp.ts_ms))
    return out


async def window_line(redis: Redis, hashes: list[bytes], bits: int) -> None:
    """The window tier: ids held, ids per hash, bytes per id (MEMORY USAGE of every hash / ids)."""
    pipe = redis.pipeline(transaction=False)
    for k in hashes:
        pipe.hlen(k)
        pipe.memory_usage(k, samples=0)
        pipe.object("encoding", k)
    replies = await pipe.execute()
    ids, used = sum(replies[0::3]), sum(u or 0 for u in replies[1::3])
    encodings = Counter(e.decode() if isinstance(e, bytes) else e for e in replies[2::3])
    print(f"dedup window (dw:, shard bits {bits}): {ids:,} ids in {len(hashes):,} hashes "
          f"({ids / max(1, len(hashes)):.0f} per hash, {dict(encodings)}), {used / max(1, ids):.1f} B per id by MEMORY USAGE")


def family(key: bytes, prefix: bytes) -> str:
    rest = key[len(prefix):]
    return rest.split(b":", 1)[0].decode() if b":" in rest else rest.decode()


async def formats(redis: Redis, prefix: bytes, n: int = 100_000) -> None:
    """Bytes per remembered id in the dedup layouts (used_memory growth / ids)."""
    mids = [f"wk-0a1b2c3d4e5f6a7b/sim-{i:016x}-{i % 7}" for i in range(n)]
    fields = [W.digest(m, 32)[1] for m in mids]
    claim = b"ns-bench.touchpoints/3/1234567\x1fapplied\x1fp1a2b3c"
    expire_at = int(time.time()) + 3600
    layouts = {
        "replay tier: dedup:<message id> -> claim/outcome/profile, TTL (before: 7 d)":
            (lambda pipe, i: pipe.set(prefix + b"fmt1:dedup:" + mids[i].encode(), claim, ex=3600), 0),
        "window tier: 10-byte digest -> partition/offset, 100 ids per hash":
            (lambda pipe, i: pipe.hset(prefix + b"fmt2:dw:%d" % (i // 100), fields[i], b"3/%d" % (1_234_567 + i)), 100),
        "window tier: 10-byte digest -> partition/offset, 64 ids per hash":
            (lambda pipe, i: pipe.hset(prefix + b"fmt3:dw:%d" % (i // 64), fields[i], b"3/%d" % (1_234_567 + i)), 64),
    }
    print(f"\n{'dedup layout':<76} {'B per id':>9}")
    for name, (write, per_hash) in layouts.items():
        before = (await redis.info("memory"))["used_memory"]
        for start in range(0, n, 5000):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(n, start + 5000)):
                write(pipe, i)
                if per_hash and i % per_hash == 0:  # one expiry per hash (as resolve.lua), not per id
                    pipe.expireat(prefix + b"fmt%d:dw:%d" % (2 if per_hash == 100 else 3, i // per_hash), expire_at)
            await pipe.execute()
        after = (await redis.info("memory"))["used_memory"]
        print(f"{name:<76} {(after - before) / n:>9.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=2_000, help="keys per family measured with MEMORY USAGE")
    parser.add_argument("--shard-bits", type=int, default=None,
                        help="shard bits of the dedup window (default: hashes as full as in production)")
    parser.add_argument("--formats", action="store_true", help="also measure the dedup layouts, 100,000 ids each")
    args = parser.parse_args()
    base = Settings.from_env()
    settings = base.with_(namespace=f"{base.namespace}-cap{int(time.time())}")
    requests = requests_of(make_records(args.events), settings)
    redis = Redis.from_url(settings.redis_url, socket_timeout=30)
    bits = args.shard_bits if args.shard_bits is not None else max(0, math.ceil(math.log2(max(1, args.events) / W.LISTPACK_FIELDS)))
    graph = RedisIdentityGraph(redis, settings.namespace, rules_from_settings(settings), settings.dedup_ttl_s,
                               dedup_window_s=settings.dedup_window_s, dedup_shard_bits=bits)
    prefix = (settings.namespace + ":").encode()
    try:
        before = (await redis.info("memory"))["used_memory"]
        for i in range(0, len(requests), 500):
            await graph.resolve_batch(requests[i:i + 500])
        after = (await redis.info("memory"))["used_memory"]
        keys: dict[str, list[bytes]] = defaultdict(list)
        async for key in redis.scan_iter(match=prefix + b"*", count=5000):
            keys[family(key, prefix)].append(key)
        total_keys = sum(len(v) for v in keys.values())
        n = len(requests)
        print(f"{n:,} events resolved; {total_keys:,} keys; used_memory grew {after - before:,} B "
              f"= {(after - before) / total_keys:.0f} B per key, {(after - before) / n:.0f} B per event")
        print(f"{'family':<8} {'keys':>9} {'per event':>10} {'MEMORY USAGE B/key':>19} {'types':>14}")
        for name, ks in sorted(keys.items(), key=lambda kv: -len(kv[1])):
            sample = ks[:args.sample]
            pipe = redis.pipeline(transaction=False)
            for k in sample:
                pipe.memory_usage(k, samples=0)
                pipe.type(k)
            replies = await pipe.execute()
            usage = [u for u in replies[0::2] if u is not None]
            types = Counter(t.decode() if isinstance(t, bytes) else t for t in replies[1::2])
            print(f"{name:<8} {len(ks):>9,} {len(ks) / n:>10.3f} {sum(usage) / max(1, len(usage)):>19.1f} "
                  f"{','.join(types):>14}")
        await window_line(redis, keys.get("dw", []), bits)
        if args.formats:
            await formats(redis, prefix)
    finally:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=prefix + b"*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
