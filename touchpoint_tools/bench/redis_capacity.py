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
Then (``--formats``) the same for candidate dedup formats, 100,000 ids each: today's string key
with a TTL, and 12-byte digests as fields of small hashes (128 per hash: Redis's default
``hash-max-listpack-entries``, so each hash stays a compact listpack), with and without a value.
The namespace is deleted at the end. docs/performance.md, "Capacity", turns these into the table.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter, defaultdict

from redis.asyncio import Redis

from streams.events.model import Touchpoint, dedup_id
from streams.identity import RedisIdentityGraph, ResolveRequest
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


def family(key: bytes, prefix: bytes) -> str:
    rest = key[len(prefix):]
    return rest.split(b":", 1)[0].decode() if b":" in rest else rest.decode()


async def formats(redis: Redis, prefix: bytes, n: int = 100_000) -> None:
    """Bytes per remembered id in candidate layouts (used_memory growth / ids)."""
    import hashlib

    ids = [hashlib.blake2b(f"sim-{i:016x}-{i % 7}".encode(), digest_size=12).digest() for i in range(n)]
    claim = b"ns-bench.touchpoints/3/1234567\x1fapplied\x1fp1a2b3c"
    layouts = {
        "string key + TTL (today: dedup:<message id> -> claim/outcome/profile)":
            lambda pipe, i, d: pipe.set(prefix + b"fmt1:dedup:sim-%016x-%d" % (i, i % 7), claim, ex=3600),
        "hash of 128, 12-byte digest -> empty value (seen only)":
            lambda pipe, i, d: pipe.hset(prefix + b"fmt2:dd:%d" % (i // 128), d, b""),
        "hash of 128, 12-byte digest -> partition:offset (8 B)":
            lambda pipe, i, d: pipe.hset(prefix + b"fmt3:dd:%d" % (i // 128), d, b"3:1a2b3c"),
    }
    print(f"\n{'candidate dedup format':<72} {'B per id':>9}")
    for name, write in layouts.items():
        before = (await redis.info("memory"))["used_memory"]
        for start in range(0, n, 5000):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(n, start + 5000)):
                write(pipe, i, ids[i])
            await pipe.execute()
        if "hash" in name:  # one expiry per hash (the window bucket), not per id
            pipe = redis.pipeline(transaction=False)
            for h in range(0, n // 128 + 1):
                pipe.expire(prefix + (b"fmt2" if "empty" in name else b"fmt3") + b":dd:%d" % h, 3600)
            await pipe.execute()
        after = (await redis.info("memory"))["used_memory"]
        print(f"{name:<72} {(after - before) / n:>9.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=2_000, help="keys per family measured with MEMORY USAGE")
    parser.add_argument("--formats", action="store_true", help="also measure candidate dedup formats")
    args = parser.parse_args()
    base = Settings.from_env()
    settings = base.with_(namespace=f"{base.namespace}-cap{int(time.time())}")
    requests = requests_of(make_records(args.events), settings)
    redis = Redis.from_url(settings.redis_url, socket_timeout=30)
    graph = RedisIdentityGraph(redis, settings.namespace, rules_from_settings(settings), settings.dedup_ttl_s)
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
