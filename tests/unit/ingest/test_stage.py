"""The ingest stage driven by plain lists of records: every record gets exactly one outcome."""

import asyncio

import orjson

from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.rules import IdentityRules
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics

NOW = 1_767_225_600_000


class AsyncMemoryGraph:
    """The in-memory identity twin behind the async interface the stage uses."""

    def __init__(self):
        self.graph = MemoryIdentityGraph(IdentityRules())

    async def resolve_batch(self, requests):
        return self.graph.resolve_batch(requests)


class ListSink:
    def __init__(self):
        self.events, self.letters, self.counts, self.changes = [], [], [], []

    async def identity_change(self, key, value):
        self.changes.append((key, orjson.loads(value)))

    async def applied(self, key, value):
        self.events.append((key, orjson.loads(value)))

    async def dead_letter(self, letter):
        self.letters.append(letter)

    async def demand(self, key, value):
        self.counts.append(orjson.loads(value))


def make_stage(normalizer=None):
    sink = ListSink()
    stage = IngestStage(max_event_bytes=4096, normalizer=normalizer or Normalizer(PiiHasher("k")), resolver=AsyncMemoryGraph(),
                        codec=DlqCodec("k", encrypt=False), sink=sink, metrics=Metrics(), demand_bucket_s=300,
                        clock_ms=lambda: NOW)
    return stage, sink


def records(values, partition=0, start=0):
    return [RawRecord(v, "ns.touchpoints", partition, start + i) for i, v in enumerate(values)]


def track(mid, category="masks", region="hubei", ts="2026-01-01T00:01:00Z"):
    return orjson.dumps({"type": "track", "messageId": mid, "event": "Product Viewed", "userId": "u1", "timestamp": ts, "channel": "app",
                         "properties": {"region": region, "products": [{"product_id": "p1", "category": category}]}})


def test_outcomes_add_up_and_duplicates_are_not_reapplied():
    stage, sink = make_stage()
    batch = records([track("a"), track("b"), track("a"), b"nope", None])
    asyncio.run(stage.process_batch(batch))
    assert [e["message_id"] for _, e in sink.events] == ["a", "b"]
    assert [dict(letter.headers)["tp.reason"] for letter in sink.letters] == [b"not_json", b"not_json"]
    m = stage.metrics
    assert (m.applied._value.get(), m.duplicates._value.get(), m.dead_lettered._value.get()) == (2, 1, 2)


def test_redelivery_of_the_same_record_is_applied_again():
    # A crash after emitting but before the offset commit redelivers the same offsets: they must
    # not be mistaken for duplicates, or the events would be lost (invariant 1).
    stage, sink = make_stage()
    batch = records([track("a")], start=7)
    asyncio.run(stage.process_batch(batch))
    asyncio.run(stage.process_batch(batch))
    assert len(sink.events) == 2 and stage.metrics.duplicates._value.get() == 0


def test_an_unexpected_exception_dead_letters_the_record_and_carries_on():
    class Exploding(Normalizer):
        def normalize(self, event, received_at_ms):
            if event["messageId"] == "boom":
                raise RuntimeError("bug")
            return super().normalize(event, received_at_ms)

    stage, sink = make_stage(Exploding(PiiHasher("k")))
    asyncio.run(stage.process_batch(records([track("ok-1"), track("boom"), track("ok-2")])))
    assert [e["message_id"] for _, e in sink.events] == ["ok-1", "ok-2"]
    (letter,) = sink.letters
    headers = dict(letter.headers)
    assert headers["tp.reason"] == b"processing_error" and b"RuntimeError" in headers["tp.message"]
    assert letter.value == track("boom") and headers["tp.source.offset"] == b"1"


def test_demand_is_pre_aggregated_per_key_bucket_and_partition():
    stage, sink = make_stage()
    batch = records([track("a"), track("b"), track("c", region="beijing")], partition=1, start=10)
    batch += records([track("d", ts="2026-01-01T00:06:00Z")], partition=0, start=3)
    asyncio.run(stage.process_batch(batch))
    counts = {(d["k"], d["b"], d["p"]): (d["n"], d["o"]) for d in sink.counts}
    bucket0, bucket1 = NOW, NOW + 300_000
    assert counts[("category:masks", bucket0, 1)] == (3, 12)
    assert counts[("category_region:masks|hubei", bucket0, 1)] == (2, 12)
    assert counts[("category_region:masks|beijing", bucket0, 1)] == (1, 12)
    assert counts[("category:masks", bucket1, 0)] == (1, 3)
    assert counts[("channel:app", bucket0, 1)] == (3, 12)
    # duplicates and rejects never count as demand
    before = len(sink.counts)
    asyncio.run(stage.process_batch(records([track("a"), b"{"], partition=1, start=50)))
    assert len(sink.counts) == before


def identify(mid, **ids):
    return orjson.dumps({"type": "identify", "messageId": mid, **ids})


def test_events_are_keyed_by_profile_and_merges_come_first():
    stage, sink = make_stage()
    asyncio.run(stage.process_batch(records([
        identify("1", userId="u1"),
        identify("2", anonymousId="a1"),
        identify("3", userId="u1", anonymousId="a1"),   # joins the two profiles
        identify("4", userId="anonymous"),              # a blocked value links nothing
    ])))
    keys = [k for k, _ in sink.events]
    values = [v for _, v in sink.events]
    p1, p2 = values[0]["profile_id"], values[1]["profile_id"]
    assert p1 != p2 and keys[:2] == [p1.encode(), p2.encode()]
    # the merge instruction goes to the loser's key, right before the event that caused it
    assert values[2] == {"control": "merge", "from": p2, "into": p1, "message_id": "3", "ts_ms": values[2]["ts_ms"]}
    assert keys[2] == p2.encode() and values[3]["profile_id"] == p1 and keys[3] == p1.encode()
    assert [dict(letter.headers)["tp.reason"] for letter in sink.letters] == [b"no_identifier"]
    assert {c["type"] for _, c in sink.changes} >= {"created", "merged"}
    assert stage.metrics.identity_merges._value.get() == 1


def test_received_at_is_the_kafka_record_time_so_replays_are_identical():
    stage, sink = make_stage()
    produced = NOW - 90_000  # the record waited 90 s in Kafka before this worker got to it
    event = orjson.dumps({"type": "track", "messageId": "late", "event": "x", "userId": "u", "timestamp": "2026-01-01T00:00:00Z", "sentAt": "2026-01-01T00:00:10Z"})
    asyncio.run(stage.process_batch([RawRecord(event, "ns.touchpoints", 0, 1, produced)]))
    (_, applied), = sink.events
    assert applied["received_at_ms"] == produced and applied["ts_ms"] == produced - 10_000
