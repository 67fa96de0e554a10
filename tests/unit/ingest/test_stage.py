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
from streams.profiles.bundle import key_partition, unbundle

NOW = 1_767_225_600_000


class AsyncMemoryGraph:
    """The in-memory identity twin behind the async interface the stage uses."""

    def __init__(self):
        self.graph = MemoryIdentityGraph(IdentityRules())

    async def resolve_batch(self, requests):
        return self.graph.resolve_batch(requests)


class ListSink:
    def __init__(self):
        self.events, self.letters, self.counts, self.changes, self.bundles = [], [], [], [], []

    async def identity_change(self, key, value):
        self.changes.append((key, orjson.loads(value)))

    async def applied(self, key, value, partition=None):
        self.bundles.append((partition, key, value))
        self.events.extend((k, orjson.loads(v) if isinstance(v, bytes) else v) for k, v in unbundle(key, value))

    async def dead_letter(self, letter):
        self.letters.append(letter)

    async def demand(self, key, value):
        self.counts.append(orjson.loads(value))


def make_stage(normalizer=None, partitions=1):
    sink = ListSink()
    stage = IngestStage(max_event_bytes=4096, normalizer=normalizer or Normalizer(PiiHasher("k")), resolver=AsyncMemoryGraph(),
                        codec=DlqCodec("k", encrypt=False), sink=sink, metrics=Metrics(), demand_bucket_s=300,
                        clock_ms=lambda: NOW, profile_partitions=partitions)
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


def test_demand_is_summed_across_batches_until_flushed():
    stage, sink = make_stage()
    batch = records([track("a"), track("b"), track("c", region="beijing")], partition=1, start=10)
    batch += records([track("d", ts="2026-01-01T00:06:00Z")], partition=0, start=3)
    asyncio.run(stage.process_batch(batch))
    asyncio.run(stage.process_batch(records([track("e")], partition=0, start=4)))
    assert sink.counts == []  # held until the worker's next commit
    assert asyncio.run(stage.flush_demand()) == len(sink.counts) > 0
    counts = {(d["k"], d["b"]): (d["n"], d["c"]) for d in sink.counts}
    bucket0, bucket1 = NOW, NOW + 300_000
    # one record per key and bucket; per source partition its count and the last offset covered
    assert counts[("category:masks", bucket0)] == (4, [[0, 1, 4], [1, 3, 12]])
    assert counts[("category_region:masks|hubei", bucket0)] == (3, [[0, 1, 4], [1, 2, 12]])
    assert counts[("category_region:masks|beijing", bucket0)] == (1, [[1, 1, 12]])
    assert counts[("category:masks", bucket1)] == (1, [[0, 1, 4]])
    assert counts[("channel:app", bucket0)] == (4, [[0, 1, 4], [1, 3, 12]])
    assert [d["b"] for d in sink.counts] == sorted(d["b"] for d in sink.counts)  # oldest bucket first
    # duplicates and rejects never count as demand; nothing pending, nothing sent
    before = len(sink.counts)
    asyncio.run(stage.process_batch(records([track("a"), b"{"], partition=1, start=50)))
    assert asyncio.run(stage.flush_demand()) == 0 and len(sink.counts) == before


def test_demand_counts_that_could_not_be_sent_stay_pending():
    stage, sink = make_stage()

    async def refuse(key, value):
        raise RuntimeError("broker gone")

    asyncio.run(stage.process_batch(records([track("a"), track("b")], partition=2)))
    sink.demand, working = refuse, sink.demand
    try:
        asyncio.run(stage.flush_demand())
        raise AssertionError("the send error must reach the commit, which then does not commit")
    except RuntimeError:
        pass
    sink.demand = working
    asyncio.run(stage.process_batch(records([track("c")], partition=2, start=2)))
    asyncio.run(stage.flush_demand())
    counts = {(d["k"], d["b"]): (d["n"], d["c"]) for d in sink.counts}
    assert counts[("category:masks", NOW)] == (3, [[2, 3, 2]])


def test_demand_counts_stay_pending_when_their_records_cannot_be_built():
    stage, sink = make_stage()
    asyncio.run(stage.process_batch(records([track("a"), track("b")], partition=2)))
    held = stage.pending_demand.counts.copy()
    real = type(stage.pending_demand).records

    def broken(self):
        raise TypeError("cannot encode")

    type(stage.pending_demand).records = broken
    try:
        asyncio.run(stage.flush_demand())
        raise AssertionError("the error must reach the commit, which then does not commit")
    except TypeError:
        pass
    finally:
        type(stage.pending_demand).records = real
    assert stage.pending_demand.counts == held and sink.counts == []
    asyncio.run(stage.flush_demand())
    assert {(d["k"], d["n"]) for d in sink.counts} >= {("category:masks", 2)}


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


def test_one_bundle_per_profile_partition_per_batch():
    stage, sink = make_stage(partitions=4)
    batch = [identify(str(i), userId=f"u{i}") for i in range(40)]
    batch.append(identify("join", userId="u1", anonymousId="x"))
    batch.append(identify("join2", anonymousId="x", email="a@b.example"))
    asyncio.run(stage.process_batch(records(batch)))
    partitions = [p for p, _, _ in sink.bundles]
    assert len(partitions) == len(set(partitions)) <= 4  # one record per partition
    for partition, key, value in sink.bundles:
        keys = [k for k, _ in unbundle(key, value)]
        assert key == keys[0] and {key_partition(k, 4) for k in keys} == {partition}
    assert sorted(e["message_id"] for _, e in sink.events) == sorted([str(i) for i in range(40)] + ["join", "join2"])
    # within a partition the batch order holds
    for _, key, value in sink.bundles:
        mids = [m["message_id"] for _, m in unbundle(key, value) if "control" not in m]
        assert mids == sorted(mids, key=lambda m: [str(i) for i in range(40)].index(m) if m.isdigit() else 100 + len(m))


def test_a_refused_bundle_is_sent_one_by_one_and_only_refused_events_are_dead_lettered():
    stage, sink = make_stage()
    working = sink.applied

    async def picky(key, value, partition=None):
        if value.startswith(b'{"bundle"'):
            raise ValueError("MessageSizeTooLarge")  # not unavailability: refused for good
        if b'"message_id":"poison"' in value:
            raise ValueError("refused")
        await working(key, value, partition)

    sink.applied = picky
    asyncio.run(stage.process_batch(records([track("a"), track("poison"), track("c")])))
    assert [e["message_id"] for _, e in sink.events] == ["a", "c"]
    (letter,) = sink.letters
    assert letter.value == track("poison") and dict(letter.headers)["tp.reason"] == b"processing_error"
    assert stage.metrics.applied._value.get() == 2


def test_audit_records_survive_a_broker_outage_in_order_and_once():
    stage, sink = make_stage()
    calls = 0
    sent = sink.identity_change

    async def flaky(key, value):
        nonlocal calls
        calls += 1
        if calls in (2, 3):  # the broker goes away at the second record, for two attempts
            raise ConnectionError("broker unavailable")
        await sent(key, value)

    sink.identity_change = flaky
    asyncio.run(stage.process_batch(records([identify(str(i), userId=f"u{i}") for i in range(4)])))
    assert [c["type"] for _, c in sink.changes] == ["created"] * 4
    assert [c["message_id"] for _, c in sink.changes] == ["0", "1", "2", "3"]
    assert stage.metrics.dependency_retries.labels("kafka")._value.get() == 2
