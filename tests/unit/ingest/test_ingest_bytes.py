"""What the ingest stage sends is a contract, byte for byte: profile-events bundles, dead letters,
identity.changes and demand-counts records, and what the demand pre-aggregation sums per series.

A seeded population (the bench's own stream, edge-case and malformed records, duplicates and a
redelivered batch, four source and four profile-events partitions) through the stage, and a seeded
set of touchpoints that walks every branch of ``event_measures`` / ``partial_counts`` (order,
refund and interest names in any case, other currencies, missing, odd and non-finite prices and
quantities, repeated order ids), must keep giving exactly these bytes. The digests were taken from
main (d9de186) before the session-11 CPU work on the ingest side (docs/performance.md). A changed
digest is a changed output: deliberate or not, it needs a decision, not a new digest alone.

One decided change since: a product's demand-counts records carry its category (``"in"``, for the
demand stage's corroboration rule, streams/demand/corroboration.py). The digests are taken with
that field removed (every other byte as before), and its own test checks where it appears."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import orjson

from streams.demand.dimensions import INTEREST_EVENTS, ORDER_EVENTS, REFUND_EVENTS, event_measures
from streams.demand.pending import PendingCounts, partial_counts
from streams.events.model import Touchpoint
from streams.identity.memory_graph import AsyncMemoryGraph
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics
from touchpoint_tools.bench.prepare_cost import NOW_MS, edge_records, fixed_records

STAGE_GOLDEN = "b9e9260ced895d470437794a7d682c473b4b61166a5b4d4f922914410520f4e3"
DEMAND_GOLDEN = "9768f8a03a1cdd69d8d88ba4de365c60af96b4c468f3bf29602809e018915bbd"


def _without_parent(value: bytes) -> bytes:
    """A demand-counts value as it was before ``"in"`` (orjson writes the same bytes back)."""
    msg = orjson.loads(value)
    msg.pop("in", None)
    return orjson.dumps(msg)


class _Sink:
    def __init__(self) -> None:
        self.out: list[tuple[Any, ...]] = []
        self.parents: list[str | None] = []

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.out.append(("applied", partition, key, value))

    async def dead_letter(self, letter: Any) -> None:
        self.out.append(("dlq", letter.value, tuple(letter.headers)))

    async def demand(self, key: bytes, value: bytes) -> None:
        self.out.append(("demand", key, _without_parent(value)))
        self.parents.append(orjson.loads(value).get("in"))

    async def identity_change(self, key: bytes, value: bytes) -> None:
        self.out.append(("change", key, value))


def _population() -> list[list[RawRecord]]:
    base = fixed_records(3000)
    values: list[bytes | None] = list(base)
    edges = edge_records(base[:300], 700)
    rng = random.Random(5)
    for e in edges:  # edge cases spread through the stream
        values.insert(rng.randrange(len(values) + 1), e)
    values.extend(rng.choice(base) for _ in range(150))  # duplicates: the same messageId at new offsets
    batches: list[list[RawRecord]] = []
    offsets = [0, 0, 0, 0]
    for n, start in enumerate(range(0, len(values), 250)):
        p = n % 4
        chunk = values[start:start + 250]
        batches.append([RawRecord(v, "ns.touchpoints", p, offsets[p] + i, NOW_MS - 5000 + i) for i, v in enumerate(chunk)])
        offsets[p] += len(chunk)
    batches.insert(7, batches[5])  # a redelivered batch: applied again, not duplicates
    return batches


def stage_digest(sink: _Sink | None = None) -> str:
    sink = sink if sink is not None else _Sink()
    stage = IngestStage(max_event_bytes=32768, normalizer=Normalizer(PiiHasher("k")), resolver=AsyncMemoryGraph(),
                        codec=DlqCodec("k", encrypt=False), sink=sink, metrics=Metrics(), clock_ms=lambda: NOW_MS,
                        profile_partitions=4)

    async def run() -> None:
        for n, batch in enumerate(_population(), 1):
            await stage.process_batch(batch)
            if n % 3 == 0:
                await stage.flush_demand()
        await stage.flush_demand()

    asyncio.run(run())
    h = hashlib.sha256()
    for item in sink.out:
        h.update(repr(item).encode())
    return h.hexdigest()


_NAMES = sorted(ORDER_EVENTS) + sorted(REFUND_EVENTS) + sorted(INTEREST_EVENTS) + ["Support Ticket Opened", "", "x"]
_ODD = [None, 0, -1, 1, 2, 2.5, 3, "4", "1.5", "x", True, float("nan"), float("inf"), 1e12, 0.1, 19.99]


def _touchpoints(n: int, seed: int = 3) -> list[Touchpoint]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["track"] * 6 + ["page", "screen", "identify", "group"])
        name = rng.choice(_NAMES)
        name = rng.choice([name, name.upper(), name.title(), f"  {name} "])
        products = []
        for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
            p: dict[str, Any] = {}
            if rng.random() < 0.9:
                p["product_id"] = f"p{rng.randrange(6)}"
            if rng.random() < 0.85:
                p["category"] = rng.choice(["masks", "travel", "apparel", ""])
            if rng.random() < 0.8:
                p["price"] = rng.choice(_ODD) if rng.random() < 0.3 else round(rng.uniform(0.5, 500), 2)
            if rng.random() < 0.8:
                p["quantity"] = rng.choice(_ODD) if rng.random() < 0.3 else rng.randint(1, 4)
            products.append(p)
        out.append(Touchpoint(
            f"m{i}", kind, NOW_MS + rng.randrange(-3_600_000, 3_600_000), NOW_MS, (("user_id", f"u{i % 50}"),),
            channel=rng.choice([None, "web", "app", "pos"]), event=name if kind != "identify" else None,
            category=rng.choice([None, None, "masks", "travel", "groceries"]), region=rng.choice([None, "hubei", "sichuan"]),
            store=rng.choice([None, None, "s-1", "s-2"]), products=products,
            order_id=rng.choice([None, f"o{rng.randrange(400)}"]),
            revenue=rng.choice([None, None, 0.0, 12.5, 99.99, round(rng.uniform(1, 900), 2)]),
            currency=rng.choice([None, None, "CNY", "USD", "cny"])))
    return out


def demand_digest() -> str:
    tps = _touchpoints(4000)
    h = hashlib.sha256()
    for t in tps:  # each event's contributions, all dimensions and measures, then a narrower choice
        h.update(repr(sorted(event_measures(t).items())).encode())
        h.update(repr(sorted(event_measures(t, ("category", "store"), ("revenue", "units"), "USD").items())).encode())
    sums, skipped = partial_counts(tps[:1000], 300)
    h.update(repr((sorted(sums.items()), sorted(skipped.items()))).encode())
    pending = PendingCounts()
    narrow = PendingCounts(("product", "category_region"), ("orders", "revenue"), "USD")
    for n, start in enumerate(range(0, len(tps), 170)):
        chunk = tps[start:start + 170]
        for counts in (pending, narrow):
            counts.add(n % 3, start + len(chunk) - 1, chunk, 300)
        if n % 5 == 4:
            for counts in (pending, narrow):
                h.update(repr((_records(counts), sorted(counts.skipped.items()))).encode())
    for counts in (pending, narrow):
        h.update(repr((_records(counts), sorted(counts.skipped.items()))).encode())
    return h.hexdigest()


def _records(counts: PendingCounts) -> list[tuple[bytes, bytes]]:
    return [(k, _without_parent(v)) for k, v in counts.take().records()]


def test_stage_sends_the_reference_bytes() -> None:
    sink = _Sink()
    assert stage_digest(sink) == STAGE_GOLDEN
    demand = [item for item in sink.out if item[0] == "demand"]
    assert len(demand) == len(sink.parents) > 0
    # Products (whose lines name a category, in the bench stream) carry it, no other key does.
    for (_, key, _), parent in zip(demand, sink.parents, strict=True):
        if key.startswith(b"product:"):
            assert parent is not None and parent.startswith("category:"), key
        else:
            assert parent is None, key


def test_demand_sums_are_the_reference_ones() -> None:
    assert demand_digest() == DEMAND_GOLDEN
