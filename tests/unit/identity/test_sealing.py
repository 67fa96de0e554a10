"""Crypto-shredding of identity.changes (streams/identity/sealing.py), without Kafka or Redis."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.identity.sealing import (
    AuditSealer,
    KeyRing,
    MemoryKeyStore,
    derive,
    names_in,
    open_record,
    open_suppressed,
    seal_suppressed,
    shred,
)
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics

PII = "test-pii-key"


class Topic:
    """identity.keys as a list of (key, value) records."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    async def send(self, key: bytes, value: bytes | None) -> None:
        self.records.append((key, value))

    def ring(self) -> KeyRing:
        return KeyRing.from_records(derive(PII, b"identity-keys-kek-v1"), self.records)


def run(coro):
    return asyncio.run(coro)


RECORDS = [
    {"type": "created", "rule": "first_seen", "identifiers": ["user_id:ann-lee-1971", "email:hash-0001"], "profile_id": "p1", "message_id": "m1"},
    {"type": "linked", "rule": "co_occurrence", "identifiers": ["device_id:dev-xyz-001"], "via": "user_id:ann-lee-1971", "profile_id": "p1",
     "gathered": {"user_id:ann-lee-1971": {"device_id": 1}}},
    {"type": "merged", "rule": "co_occurrence", "identifiers": ["device_id:dev-xyz-001", "user_id:bob-ross-42"], "bridged": ["device_id:dev-xyz-001"],
     "from_profile_id": "p2", "profile_id": "p1"},
]


def test_names_in_covers_every_field_that_names_an_identifier() -> None:
    assert names_in(RECORDS[1]) == ["device_id:dev-xyz-001", "user_id:ann-lee-1971"]
    assert names_in(RECORDS[2]) == ["device_id:dev-xyz-001", "user_id:bob-ross-42"]


def test_sealed_records_name_nobody_and_open_with_the_keys() -> None:
    store, topic = MemoryKeyStore(), Topic()
    sealer = AuditSealer(store, PII, topic.send)
    sealed = run(sealer.seal([dict(r) for r in RECORDS]))
    text = orjson.dumps(sealed).decode()
    for raw in ("ann-lee-1971", "bob-ross-42", "dev-xyz-001", "hash-0001"):
        assert raw not in text
    assert all(x.split(":")[0] in {"user_id", "email", "device_id"} for r in sealed for x in names_in(r))  # types stay readable
    assert [open_record(r, topic.ring()) for r in sealed] == RECORDS
    # one key per identifier, published once (confirmed at the commit), the same on the next batch
    assert len(topic.records) == 4
    run(sealer.confirm())
    again = run(sealer.seal([dict(RECORDS[0])]))
    assert len(topic.records) == 4 and open_record(again[0], topic.ring()) == RECORDS[0]


def test_erasure_shreds_the_keys_so_old_records_read_erased() -> None:
    store, topic = MemoryKeyStore(), Topic()
    sealer = AuditSealer(store, PII, topic.send)
    sealed = run(sealer.seal([dict(r) for r in RECORDS]))
    assert run(shred(store, PII, ["user_id:ann-lee-1971", "email:hash-0001", "device_id:dev-xyz-001"], topic.send)) == 3
    ring = topic.ring()
    first, linked, merged = (open_record(r, ring) for r in sealed)
    assert first["identifiers"] == ["user_id:[erased]", "email:[erased]"] and first["unreadable"] == 2
    assert linked["via"] == "user_id:[erased]" and linked["gathered"] == {}
    assert merged["identifiers"] == ["device_id:[erased]", "user_id:bob-ross-42"] and merged["unreadable"] == 1  # bob is not erased
    # the person comes back: a new key, the old records stay unreadable, the new ones open
    new = run(sealer.seal([{"type": "created", "identifiers": ["user_id:ann-lee-1971"], "profile_id": "p9"}]))
    ring = topic.ring()
    assert open_record(new[0], ring)["identifiers"] == ["user_id:ann-lee-1971"]
    assert open_record(sealed[0], ring)["identifiers"] == ["user_id:[erased]", "email:[erased]"]


def test_a_key_whose_publication_was_not_confirmed_is_published_again() -> None:
    """A crash between creating a key and the commit: the redelivered batch publishes it again."""
    store, topic = MemoryKeyStore(), Topic()
    run(AuditSealer(store, PII, topic.send).seal([dict(RECORDS[0])]))
    lost = Topic()  # the worker died: its sends never reached Kafka
    again = AuditSealer(store, PII, lost.send)
    sealed = run(again.seal([dict(RECORDS[0])]))
    assert len(lost.records) == 2 and open_record(sealed[0], lost.ring()) == RECORDS[0]
    run(again.confirm())
    run(again.seal([dict(RECORDS[0])]))
    assert len(lost.records) == 2  # confirmed: not published a third time


def test_records_written_before_sealing_are_read_as_they_are() -> None:
    assert open_record(RECORDS[1], KeyRing()) == RECORDS[1]


def test_the_suppression_list_opens_only_with_the_pii_key() -> None:
    ledger = derive(PII, b"erasure-ledger-v1")
    sealed = seal_suppressed(ledger, ["ab" * 20])
    assert "abab" not in sealed and open_suppressed(ledger, sealed) == ["ab" * 20]
    assert open_suppressed(None, ["cd"]) == ["cd"]  # older records: a plain list
    with pytest.raises(ValueError, match="PII key"):
        open_suppressed(derive("another", b"erasure-ledger-v1"), sealed)


def test_the_key_topic_holds_no_usable_key_without_the_pii_key() -> None:
    store, topic = MemoryKeyStore(), Topic()
    run(AuditSealer(store, PII, topic.send).seal([dict(RECORDS[0])]))
    assert KeyRing.from_records(derive("another", b"identity-keys-kek-v1"), topic.records) == {}


class AsyncGraph:
    def __init__(self) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())

    async def resolve_batch(self, requests: list[ResolveRequest]):
        return self.graph.resolve_batch(requests)


class Sink:
    def __init__(self) -> None:
        self.changes: list[bytes] = []

    async def identity_change(self, key: bytes, value: bytes) -> None:
        self.changes.append(value)

    async def applied(self, key, value, partition=None) -> None:
        pass

    async def dead_letter(self, letter) -> None:
        pass

    async def demand(self, key, value) -> None:
        pass


def test_the_ingest_stage_writes_only_sealed_identifiers() -> None:
    store, topic, sink = MemoryKeyStore(), Topic(), Sink()
    stage = IngestStage(max_event_bytes=4096, normalizer=Normalizer(PiiHasher("k")), resolver=AsyncGraph(),
                        codec=DlqCodec("k", encrypt=False), sink=sink, metrics=Metrics(),
                        sealer=AuditSealer(store, PII, topic.send), clock_ms=lambda: 1_767_225_600_000)
    events = [{"type": "identify", "messageId": f"m{i}", "userId": f"member-{i // 2}", "anonymousId": f"anon-{i}",
               "timestamp": "2026-01-01T00:00:00Z", "context": {"externalIds": [{"type": "pos_card_id", "id": "card-7"}]}}
              for i in range(4)]
    run(stage.process_batch([RawRecord(orjson.dumps(e), "ns.touchpoints", 0, i) for i, e in enumerate(events)]))
    assert sink.changes
    text = b"".join(sink.changes)
    for raw in (b"member-0", b"member-1", b"anon-", b"card-7"):
        assert raw not in text
    opened = [open_record(orjson.loads(v), topic.ring()) for v in sink.changes]
    assert {"user_id:member-0", "anonymous_id:anon-3", "pos_card_id:card-7"} <= {n for r in opened for n in names_in(r)}


def test_rebuild_skips_erased_identifiers_and_restores_erasure_times_and_readmissions() -> None:
    from streams.identity.memory_graph import suppression_digest
    from streams.identity.rebuild import build_image

    store, topic = MemoryKeyStore(), Topic()
    sealer = AuditSealer(store, PII, topic.send)
    ann = [{"type": "created", "rule": "first_seen", "identifiers": ["user_id:ann-lee-1971", "email:hash-0001"], "profile_id": "p1",
            "message_id": "m1", "ts_ms": 10}]
    bob = [{"type": "created", "rule": "first_seen", "identifiers": ["user_id:bob-ross-42"], "profile_id": "p2", "message_id": "m2", "ts_ms": 11}]
    sealed = run(sealer.seal(ann + bob))
    run(shred(store, PII, ["user_id:ann-lee-1971", "email:hash-0001"], topic.send))
    digests = [suppression_digest("user_id:ann-lee-1971"), suppression_digest("email:hash-0001")]
    erased = {"type": "erased", "rule": "erasure", "message_id": None, "profile_id": "p1", "identifiers": [], "suppressed": digests, "ts_ms": 500}
    readmitted = {"type": "readmitted", "rule": "consent", "message_id": "m9", "profile_id": None, "identifiers": [],
                  "suppressed": digests[1:], "ts_ms": 900}
    ring = topic.ring()
    changes = [(open_record(r, ring), 1) for r in sealed] + [(erased, 1), (readmitted, 1)]
    img = build_image(changes, [], IdentityRules(), 86400, now_ms=2)
    assert img.hashes["p:p2"].keys() == {"user_id:bob-ross-42"} and "p:p1" not in img.hashes
    assert not any("erased" in k for k in img.strings)
    assert img.strings[f"supp:{digests[0]}"] == "500" and img.strings[f"supp:{digests[1]}"] == "r500"
    assert KeyRing().by_digest == {} and len(ring.by_digest) == 1  # bob's key only


def _envelope_nonces(sealed: list[dict], topic: Topic) -> list[bytes]:
    """The nonce of every value sealed in ``sealed`` and of every data key on ``topic``."""
    import base64

    def nonce(text: str) -> bytes:
        body = text.rsplit(":", 1)[1]
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:12]

    values = {x for r in sealed for x in names_in(r)}
    return [nonce(x) for x in values] + [nonce(orjson.loads(v)["key"]) for _, v in topic.records if v is not None]


def test_every_value_and_key_record_of_a_batch_has_its_own_nonce() -> None:
    """The nonces of a batch are cut from one random draw: still one distinct 12-byte nonce each."""
    store, topic = MemoryKeyStore(), Topic()
    many = [{"type": "created", "identifiers": [f"user_id:u{i}", f"email:e{i}"], "profile_id": f"p{i}"} for i in range(50)]
    sealed = run(AuditSealer(store, PII, topic.send).seal(many + [dict(r) for r in RECORDS]))
    got = _envelope_nonces(sealed, topic)
    assert len(got) == 2 * (100 + 4) and all(len(n) == 12 for n in got) and len(set(got)) == len(got)
    assert [open_record(r, topic.ring()) for r in sealed] == many + RECORDS


def test_a_batch_seals_each_identifier_once() -> None:
    """Records of one batch naming the same identifier carry the same envelope (its kid shows that anyway)."""
    sealed = run(AuditSealer(MemoryKeyStore(), PII, Topic().send).seal([dict(r) for r in RECORDS]))
    assert sealed[1]["identifiers"][0] == sealed[2]["identifiers"][0] == sealed[2]["bridged"][0]
    assert sealed[0]["identifiers"][0] == sealed[1]["via"] == next(iter(sealed[1]["gathered"]))


def test_once_per_commit_publishes_a_key_once_until_the_commit_and_again_after_a_lost_send() -> None:
    store, topic = MemoryKeyStore(), Topic()
    sealer = AuditSealer(store, PII, topic.send, once_per_commit=True)
    run(sealer.seal([dict(RECORDS[0])]))
    run(sealer.seal([dict(RECORDS[0])]))  # the next batch, before the commit: already on its way
    assert len(topic.records) == 2
    sealer.forget()  # the delivery check failed: the batches are processed again
    again = run(sealer.seal([dict(RECORDS[0])]))
    assert len(topic.records) == 4 and open_record(again[0], topic.ring()) == RECORDS[0]
    run(sealer.confirm())
    run(sealer.seal([dict(RECORDS[0])]))
    assert len(topic.records) == 4
    plain = AuditSealer(MemoryKeyStore(), PII, Topic().send)  # the default: published again until confirmed
    run(plain.seal([dict(RECORDS[0])]))
    assert len(plain._unconfirmed) == 2 and not plain._sent


def test_once_per_commit_publishes_the_new_key_of_an_identifier_erased_before_the_commit() -> None:
    """An erasure between two batches: the person's new key has another kid and must be published."""
    store, topic = MemoryKeyStore(), Topic()
    sealer = AuditSealer(store, PII, topic.send, once_per_commit=True)
    run(sealer.seal([dict(RECORDS[0])]))
    run(shred(store, PII, names_in(RECORDS[0]), topic.send))
    back = run(sealer.seal([dict(RECORDS[0])]))
    assert len(topic.records) == 2 + 2 + 2  # published, tombstoned, the new keys published
    assert open_record(back[0], topic.ring()) == RECORDS[0]


def test_the_ingest_delivery_check_makes_the_sealer_forget_on_a_lost_send() -> None:
    from streams.ingest.agent import delivery_check
    from streams.kafka.batchsource import Undelivered

    class Lost:
        failed = False

        def delivered(self) -> None:
            if self.failed:
                raise Undelivered("1 ingest records not delivered")

    sink, topic = Lost(), Topic()
    sealer = AuditSealer(MemoryKeyStore(), PII, topic.send, once_per_commit=True)
    check = delivery_check(sink, sealer)  # type: ignore[arg-type]
    run(sealer.seal([dict(RECORDS[0])]))
    check()
    assert sealer._sent
    sink.failed = True
    with pytest.raises(Undelivered):
        check()
    run(sealer.seal([dict(RECORDS[0])]))
    assert len(topic.records) == 4  # published again
