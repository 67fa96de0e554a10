"""Worker CPU of sealing the identity audit trail (streams/identity/sealing.py).

Runs the ingest stage over the in-memory identity graph and an in-memory key store, in batches of
500, with and without the sealer, on cold traffic (mostly new people: nearly every event creates
or links, so writes audit records) and steady traffic (a known population), three alternating runs each, and
prints ``process_time`` microseconds per event (the Redis round trips of the real key store are
not included: one MGET per batch with audit records). Usage:

    .venv/bin/python touchpoint_tools/bench/sealing_cost.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import orjson

from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.rules import IdentityRules
from streams.identity.sealing import AuditSealer, MemoryKeyStore
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics


class _Graph:
    def __init__(self) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())

    async def resolve_batch(self, requests: Any) -> Any:
        return self.graph.resolve_batch(requests)


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


def run(sealed: bool, events: list[bytes]) -> tuple[float, int]:
    sink = _Sink()
    stage = IngestStage(max_event_bytes=8192, normalizer=Normalizer(PiiHasher("k")), resolver=_Graph(), codec=DlqCodec("k", encrypt=False),
                        sink=sink, metrics=Metrics(), sealer=AuditSealer(MemoryKeyStore(), "k", _publish) if sealed else None,
                        clock_ms=lambda: 1_767_225_600_000)
    records = [RawRecord(v, "ns.touchpoints", 0, i) for i, v in enumerate(events)]
    started = time.process_time()
    for i in range(0, len(records), 500):
        asyncio.run(stage.process_batch(records[i:i + 500]))
    return (time.process_time() - started) / len(records) * 1e6, sink.changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    args = ap.parse_args()
    for phase, people in (("cold", args.events), ("steady", args.events // 10)):
        events = traffic(args.events, people, 1)
        plain, sealed = [], []
        for _ in range(3):  # alternating, so a busy machine's drift hits both alike
            plain.append(run(False, events)[0])
            sealed.append(run(True, events))
        print(f"{phase}: plain {statistics.median(plain):.1f} us/event, sealed {statistics.median(s for s, _ in sealed):.1f} us/event"
              f" ({sealed[0][1] / args.events:.2f} audit records per event)")


if __name__ == "__main__":
    main()
