"""Micro-benchmark: worker CPU per event of the ingest stage, whole and by part.

    python -m touchpoint_tools.bench.ingest_cost [--events 20000] [--repeats 5] [--batch 500]

Runs :class:`IngestStage` over the bench's own event stream (``prepare_cost.fixed_records``: the
simulator's population, ~one person per 20 events, fixed times so every run sees the same bytes),
in batches of ``--batch`` records of one source partition (four partitions in turn, as the
worker's consumer hands them over), with the demand counts flushed every ten batches (the
worker's commit). Identity resolution is the in-memory twin (``MemoryIdentityGraph``); its own
CPU is measured apart and left out of "stage", which is what the worker spends around its Redis
round trip. Also timed alone, over the same events: ``prepare`` (decode, validate, normalise),
the demand pre-aggregation (``PendingCounts.add`` per batch and partition, ``records()`` per
commit; from a new ``PendingCounts`` each pass, and "steady": one kept across passes as the worker
keeps its own, so whatever it memoises is warm) and the Redis identity client's own work (``RedisIdentityGraph.resolve_batch``: the rules'
split of identifiers, the packing of ``resolve.lua`` calls, the replies' decoding; the socket
replaced by canned replies: no Redis). Figures are ``process_time`` microseconds
per event, the best of ``--repeats`` passes. No Kafka, no Redis.

To compare with another checkout, run this file from there: ``cd <checkout> && PYTHONPATH=.
python <copy of this file>`` (it prints which ``streams`` it imported).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streams
from streams.demand.pending import OrderMemory, PendingCounts
from streams.events.model import Touchpoint, dedup_id
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics
from touchpoint_tools.bench.prepare_cost import NOW_MS, fixed_records

PARTITIONS = 4
BATCHES_PER_COMMIT = 10


class TimedGraph:
    """The in-memory identity graph behind the stage's async interface, its own CPU counted apart."""

    def __init__(self) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())
        self.seconds = 0.0

    async def resolve_batch(self, requests: Sequence[ResolveRequest]) -> Any:
        started = time.process_time()
        try:
            return self.graph.resolve_batch(requests)
        finally:
            self.seconds += time.process_time() - started


class NullSink:
    """Counts what the stage sends (the records' bytes are pinned by tests/unit/ingest/test_ingest_bytes.py)."""

    def __init__(self) -> None:
        self.sent = 0

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.sent += 1

    async def dead_letter(self, letter: Any) -> None:
        self.sent += 1

    async def demand(self, key: bytes, value: bytes) -> None:
        self.sent += 1

    async def identity_change(self, key: bytes, value: bytes) -> None:
        self.sent += 1


def batches(values: Sequence[bytes], size: int) -> list[list[RawRecord]]:
    """Batches of ``size`` records, each of one source partition, the partitions in turn."""
    out = []
    offsets = [0] * PARTITIONS
    for n, start in enumerate(range(0, len(values), size)):
        p = n % PARTITIONS
        chunk = values[start:start + size]
        out.append([RawRecord(v, "ns.touchpoints", p, offsets[p] + i, NOW_MS - 1000) for i, v in enumerate(chunk)])
        offsets[p] += len(chunk)
    return out


def make_stage() -> tuple[IngestStage, TimedGraph]:
    graph = TimedGraph()
    stage = IngestStage(max_event_bytes=32768, normalizer=Normalizer(PiiHasher("bench-fixed-key")), resolver=graph,
                        codec=DlqCodec("k", encrypt=False), sink=NullSink(), metrics=Metrics(), clock_ms=lambda: NOW_MS)
    return stage, graph


def stage_pass(work: list[list[RawRecord]]) -> tuple[float, float]:
    """(seconds of the whole stage, of which the in-memory graph), one pass from a fresh stage."""
    stage, graph = make_stage()

    async def run() -> None:
        for n, batch in enumerate(work, 1):
            await stage.process_batch(batch)
            if n % BATCHES_PER_COMMIT == 0:
                await stage.flush_demand()
        await stage.flush_demand()

    started = time.process_time()
    asyncio.run(run())
    return time.process_time() - started, graph.seconds


def applied_touchpoints(work: list[list[RawRecord]]) -> list[tuple[int, int, list[Touchpoint]]]:
    """(partition, last offset, touchpoints) per batch, as ``_emit_demand`` hands them to PendingCounts."""
    stage, _ = make_stage()
    out = []
    for batch in work:
        tps = [t for r in batch if isinstance(t := stage.prepare(r, NOW_MS), Touchpoint)]
        out.append((batch[0].partition, batch[-1].offset, tps))
    return out


def demand_pass(applied: list[tuple[int, int, list[Touchpoint]]], pending: PendingCounts | None = None) -> None:
    """The stage's demand work over the stream: ``add`` per batch, ``records()`` per commit. With
    ``pending``, that one is used again (as the worker keeps its own: whatever it memoises stays),
    its order ids forgotten so that every pass counts the same orders."""
    pending = PendingCounts() if pending is None else pending
    pending.orders = OrderMemory()
    for n, (partition, last, tps) in enumerate(applied, 1):
        pending.add(partition, last, tps, 300)
        if n % BATCHES_PER_COMMIT == 0:
            pending.take().records()
    pending.take().records()


def client_cost(requests: list[ResolveRequest], repeats: int) -> float:
    """Best seconds of the Redis identity client's own work for ``requests`` in batches of 500:
    ``resolve_batch`` (the rules' split of identifiers, the packing of resolve.lua calls, the
    replies' decoding) with the socket replaced by canned replies ("existing", no changes)."""
    from streams.identity.redis_graph import RedisIdentityGraph

    class Canned(RedisIdentityGraph):
        async def load_scripts(self) -> None:
            pass

        async def _round_trip(self, packed: bytes, n: int, events: int) -> list[Any]:
            per = self._per_call
            return [[[b"existing", b"p-1", b""]] * min(per, events - i * per) for i in range(n)]

    graph = Canned(None, "bench", IdentityRules())  # type: ignore[arg-type]  # the socket is never used

    async def run() -> None:
        for i in range(0, len(requests), 500):
            await graph.resolve_batch(requests[i:i + 500])

    return best(lambda: asyncio.run(run()), repeats)


def best(step: Callable[[], Any], repeats: int) -> float:
    out = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        step()
        out = min(out, time.process_time() - started)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    if args.events < 1 or args.repeats < 1 or args.batch < 1:
        ap.error("--events, --repeats and --batch must be positive")
    print(f"streams from {Path(streams.__file__).parent.parent}")
    values = fixed_records(args.events)
    work = batches(values, args.batch)
    n = len(values)
    stage_best = graph_part = float("inf")
    for _ in range(args.repeats):
        total, graph_s = stage_pass(work)
        if total - graph_s < stage_best:
            stage_best, graph_part = total - graph_s, graph_s
    prep_stage, _ = make_stage()
    flat = [r for batch in work for r in batch]
    prepare_s = best(lambda: [prep_stage.prepare(r, NOW_MS) for r in flat], args.repeats)
    applied = applied_touchpoints(work)
    demand_s = best(lambda: demand_pass(applied), args.repeats)
    kept = PendingCounts()
    demand_pass(applied, kept)  # the worker's steady state: what it memoises is there already
    steady_s = best(lambda: demand_pass(applied, kept), args.repeats)
    requests = [ResolveRequest(dedup_id(t.message_id, t.scope), f"ns.touchpoints/{p}/{i}", t.identifiers, t.ts_ms)
                for p, _, tps in applied for i, t in enumerate(tps)]
    client_s = client_cost(requests, args.repeats)
    us = 1e6 / n
    print(f"events {n}, applied {sum(len(t) for _, _, t in applied)}, batches of {args.batch}, best of {args.repeats}")
    print(f"stage (without the in-memory graph) {stage_best * us:6.2f} us/event   (in-memory graph {graph_part * us:.2f})")
    print(f"  prepare (decode, validate, normalise) {prepare_s * us:6.2f}")
    print(f"  demand pre-aggregation (add + records) {demand_s * us:6.2f}   (steady, the worker's PendingCounts kept {steady_s * us:.2f})")
    print(f"redis identity client (split, pack, decode; no socket) {client_s * us:6.2f}")


if __name__ == "__main__":
    main()
