"""Worker CPU of sealing the identity audit trail (streams/identity/sealing.py).

Runs the ingest stage over the in-memory identity graph and an in-memory key store, in batches of
500, with and without the sealer, on cold traffic (mostly new people: nearly every event creates
or links, so writes audit records) and steady traffic (a known population), three alternating runs each, and
prints ``process_time`` microseconds per event (the Redis round trips of the real key store are
not included: one MGET per batch with audit records). The sealer's keys are confirmed published
every ``--batches-per-commit`` batches, as the worker does at each commit (1 s: ~10 batches of 500
at 5,000 events/s); with ``--redis URL`` the key store is the worker's (Redis, a throw-away
namespace, deleted after each run) and its round trips are counted too. The sealer is built as
the worker builds it (``once_per_commit`` where the tree has it), so the file runs against an
older checkout too, for a before/after: ``cd <checkout> && PYTHONPATH=. python <this file>`` (it
prints which ``streams`` it imported). Usage:

    .venv/bin/python touchpoint_tools/bench/sealing_cost.py [--events 20000] [--batches-per-commit 10] [--redis URL]
    .venv/bin/python touchpoint_tools/bench/sealing_cost.py --store --redis URL   # the Redis key store alone, per key
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

import streams
from streams.identity.memory_graph import AsyncMemoryGraph
from streams.identity.sealing import AuditSealer, MemoryKeyStore
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics
from touchpoint_tools.bench.identity_bench import drop_namespace


class _Sink:
    def __init__(self) -> None:
        self.changes = 0

    async def identity_change(self, key: bytes, value: bytes) -> None:
        self.changes += 1

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        pass

    async def dead_letter(self, letter: Any) -> None:
        pass

    async def demand(self, key: bytes, value: bytes) -> None:
        pass


async def _publish(key: bytes, value: bytes | None) -> None:
    pass


def traffic(n: int, people: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = rng.randrange(people)
        e: dict[str, Any] = {"type": "track", "event": "Product Viewed", "messageId": f"m{seed}-{i}",
                             "anonymousId": f"anon-{p}-{rng.randrange(3)}", "timestamp": "2026-01-01T00:00:00Z"}
        if rng.random() < 0.5:
            e["userId"] = f"user-{p}"
        if rng.random() < 0.3:
            e["context"] = {"device": {"id": f"dev-{p}-{rng.randrange(2)}"}}
        out.append(orjson.dumps(e))
    return out


def _sealer(store: Any) -> AuditSealer:
    """Built as streams/ingest/agent.py builds the worker's."""
    worker = {"once_per_commit": True} if "once_per_commit" in inspect.signature(AuditSealer).parameters else {}
    return AuditSealer(store, "k", _publish, **worker)


def run(sealed: bool, events: list[bytes], per_commit: int = 10, redis_url: str | None = None) -> tuple[float, int]:
    return asyncio.run(_run(sealed, events, per_commit, redis_url))


async def _run(sealed: bool, events: list[bytes], per_commit: int, redis_url: str | None) -> tuple[float, int]:
    sink = _Sink()
    redis: Any = None
    store: Any = MemoryKeyStore()
    if redis_url and sealed:
        from redis.asyncio import Redis

        from streams.identity.data_keys import RedisKeyStore

        redis = Redis.from_url(redis_url)
        ns = f"sealing-cost-{uuid.uuid4().hex[:8]}"
        store = RedisKeyStore(redis, ns)
    sealer = _sealer(store) if sealed else None
    stage = IngestStage(max_event_bytes=8192, normalizer=Normalizer(PiiHasher("k")), resolver=AsyncMemoryGraph(), codec=DlqCodec("k", encrypt=False),
                        sink=sink, metrics=Metrics(), sealer=sealer, clock_ms=lambda: 1_767_225_600_000)
    records = [RawRecord(v, "ns.touchpoints", 0, i) for i, v in enumerate(events)]
    started = time.process_time()
    for n, i in enumerate(range(0, len(records), 500), 1):
        await stage.process_batch(records[i:i + 500])
        if sealer is not None and n % per_commit == 0:
            await sealer.confirm()
    if sealer is not None:
        await sealer.confirm()
    took = time.process_time() - started
    if redis is not None:
        await drop_namespace(redis, ns)
        await redis.aclose()
    return took / len(records) * 1e6, sink.changes


async def store_cost(redis_url: str, keys: int = 800, repeats: int = 10) -> dict[str, float]:
    """Client CPU (``process_time``) per key of the Redis key store, median of ``repeats`` rounds of
    ``keys`` new digests: created (all missing), found (all present), marked published."""
    from redis.asyncio import Redis

    from streams.identity.data_keys import RedisKeyStore

    redis = Redis.from_url(redis_url)
    ns = f"sealing-cost-{uuid.uuid4().hex[:8]}"
    store = RedisKeyStore(redis, ns)
    took: dict[str, list[float]] = {"create": [], "found": [], "confirm": []}
    try:
        for _ in range(repeats):
            digests = [uuid.uuid4().hex for _ in range(keys)]
            for name, call in (("create", store.get_or_create), ("found", store.get_or_create), ("confirm", store.mark_published)):
                started = time.process_time()
                await call(digests)
                took[name].append((time.process_time() - started) / keys * 1e6)
    finally:
        await drop_namespace(redis, ns)
        await redis.aclose()
    return {name: statistics.median(v) for name, v in took.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batches-per-commit", type=int, default=10, help="batches of 500 between two confirms of the data keys")
    ap.add_argument("--redis", default=None, help="a Redis URL: the worker's key store there instead of the in-memory one")
    ap.add_argument("--store", action="store_true", help="only the Redis key store's client CPU per key (needs --redis)")
    args = ap.parse_args()
    print(f"streams from {Path(streams.__file__).parent.parent}")
    if args.events < 1 or args.batches_per_commit < 1:
        ap.error("--events and --batches-per-commit must be positive")
    if args.store:
        if not args.redis:
            ap.error("--store needs --redis URL")
        got = asyncio.run(store_cost(args.redis))
        print("key store, client CPU per key: " + ", ".join(f"{k} {v:.1f} us" for k, v in got.items()))
        return
    for phase, people in (("cold", args.events), ("steady", args.events // 10)):
        events = traffic(args.events, people, 1)
        plain, sealed = [], []
        for _ in range(3):  # alternating, so a busy machine's drift hits both alike
            plain.append(run(False, events)[0])
            sealed.append(run(True, events, args.batches_per_commit, args.redis))
        print(f"{phase}: plain {statistics.median(plain):.1f} us/event, sealed {statistics.median(s for s, _ in sealed):.1f} us/event"
              f" ({sealed[0][1] / args.events:.2f} audit records per event)")


if __name__ == "__main__":
    main()
