"""The hand-made trap population through the ingest stage and the in-memory identity twin,
checked exactly against its oracle (the real-stack run is tests/integration/test_identity.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from streams.identity.identifiers import stored_identifier
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.rules import IdentityRules
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics
from tests.unit.identity.test_raw_rules import _Graph, _Sink
from tests.unit.identity.trap_population import PLACEHOLDERS, trap_traffic

HASHER = PiiHasher("trap-key")
NOW = 1_767_225_600_000 + 10**9


def run(events: list[dict], batch: int) -> tuple[_Sink, MemoryIdentityGraph, Metrics]:
    rules = IdentityRules()
    sink, metrics, graph = _Sink(), Metrics(), _Graph(rules)
    stage = IngestStage(max_event_bytes=8192, normalizer=Normalizer(HASHER, "CN", rules=rules), resolver=graph,
                        codec=DlqCodec("k", encrypt=False), sink=sink, metrics=metrics, clock_ms=lambda: NOW)
    recs = [RawRecord(orjson.dumps(e), "ns.touchpoints", 0, i) for i, e in enumerate(events)]
    for i in range(0, len(recs), batch):
        asyncio.run(stage.process_batch(recs[i:i + batch]))
    return sink, graph.graph, metrics


@pytest.mark.parametrize(("seed", "batch"), [(17, 500), (18, 37), (19, 1)])
def test_trap_population_is_exact(seed: int, batch: int) -> None:
    traffic = trap_traffic(seed)
    sink, graph, metrics = run(traffic.events, batch)
    expected = traffic.expected(HASHER)
    owners = []
    for ids in expected:
        pids = {graph.lookup(i) for i in ids}
        assert len(pids) == 1 and None not in pids, sorted(ids)
        owners.append(pids.pop())
        assert set(graph.identifiers_of(owners[-1])) - {stored_identifier(s, HASHER) for s in traffic.shared} == ids
    assert len(set(owners)) == len(expected)  # one profile per customer, no two customers together
    for text in PLACEHOLDERS:
        kind, _, raw = text.partition(":")
        assert graph.lookup((kind, raw)) is None
    assert f"phone:{HASHER.hash('phone', '+8613800000000')}" in graph._quar  # the store phone
    # every event of a customer folded into their profile; only all-refused events dead-lettered
    applied = [e for e in sink.events if "control" not in e]
    per_profile = Counter(graph.current_profile(e["profile_id"]) for e in applied)
    assert sorted(per_profile.values()) == sorted(c.events for c in traffic.customers if c.events)
    assert len(sink.letters) == traffic.dead
    # what the profiles stage receives agrees with the graph
    for e in applied:
        for text in e["identifiers"]:
            assert graph.lookup(tuple(text.split(":", 1))) == graph.current_profile(e["profile_id"]), (e["message_id"], text)
    # no raw email or phone anywhere downstream
    blob = b"".join(sink.raw).lower()
    for c in traffic.customers:
        assert c.email.lower().encode() not in blob and c.phone.encode() not in blob
    assert b"13800000000" not in blob and b"95588" not in blob
    assert metrics.identity_refused.labels("supernode")._value.get() == 1
