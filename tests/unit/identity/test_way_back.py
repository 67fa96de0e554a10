"""An erased person who comes back (streams/identity/rights.py), through the ingest stage and the
in-memory twin: only a consented event later than the erasure readmits, and only what it carries."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import orjson

from streams.identity.memory_graph import MemoryIdentityGraph, readmittable, suppressed
from streams.identity.rights import MemoryReadmitter, grants_consent
from streams.identity.rules import IdentityRules
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01
ERASED_AT = T0 + 10 * DAY
NOW = T0 + 30 * DAY


class Graph:
    def __init__(self) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())

    async def resolve_batch(self, requests):
        return self.graph.resolve_batch(requests)


class Sink:
    def __init__(self) -> None:
        self.changes: list[dict] = []
        self.events: list[bytes] = []

    async def identity_change(self, key, value):
        self.changes.append(orjson.loads(value))

    async def applied(self, key, value, partition=None):
        self.events.append(value)

    async def dead_letter(self, letter):
        pass

    async def demand(self, key, value):
        pass


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def event(mid: str, at: int, consent: dict | None = None, **ids: str) -> dict:
    e = {"type": "identify", "messageId": mid, "timestamp": iso(at), "traits": {}}
    if "user" in ids:
        e["userId"] = ids["user"]
    if "anon" in ids:
        e["anonymousId"] = ids["anon"]
    if "email" in ids:
        e["traits"]["email"] = ids["email"]
    if consent is not None:
        e["context"] = {"consent": {"categoryPreferences": consent}}
    return e


class World:
    def __init__(self) -> None:
        self.graph, self.sink = Graph(), Sink()
        self.hasher = PiiHasher("k")
        self.stage = IngestStage(max_event_bytes=8192, normalizer=Normalizer(self.hasher), resolver=self.graph,
                                 codec=DlqCodec("k", encrypt=False), sink=self.sink, metrics=Metrics(),
                                 readmitter=MemoryReadmitter(self.graph.graph), clock_ms=lambda: NOW)
        self.offset = 0

    def send(self, *events: dict) -> None:
        records = []
        for e in events:
            records.append(RawRecord(orjson.dumps(e), "ns.touchpoints", 0, self.offset))
            self.offset += 1
        asyncio.run(self.stage.process_batch(records))

    def owner(self, kind: str, value: str) -> str | None:
        if kind == "email":
            value = self.hasher.hash("email", value)
        return self.graph.graph.lookup((kind, value))


def test_the_suppression_rules() -> None:
    assert grants_consent({"categoryPreferences": {"marketing": False, "analytics": True}}) and grants_consent({"ads": True})
    assert not grants_consent({"categoryPreferences": {"marketing": False}}) and not grants_consent(None) and not grants_consent({"x": "yes"})
    assert suppressed("1", NOW) and suppressed(str(ERASED_AT), NOW) and not suppressed(None, NOW)
    assert suppressed(f"r{ERASED_AT}", ERASED_AT - 1) and not suppressed(f"r{ERASED_AT}", ERASED_AT + 1)
    assert readmittable(str(ERASED_AT), ERASED_AT + 1) and not readmittable(str(ERASED_AT), ERASED_AT)
    assert not readmittable("1", NOW) and not readmittable(f"r{ERASED_AT}", NOW) and not readmittable(None, NOW)


def test_an_erased_person_comes_back_only_by_consenting_again_and_as_a_new_profile() -> None:
    w = World()
    w.send(event("a1", T0, user="u-1", anon="anon-1"), event("a2", T0 + DAY, user="u-1", email="ann@example.com"))
    old = w.owner("user_id", "u-1")
    assert old is not None and w.owner("email", "ann@example.com") == old
    result = w.graph.graph.erase(("user_id", "u-1"), ERASED_AT)
    assert result.profile_id == old
    before, sent = len(w.sink.changes), len(w.sink.events)

    # replays of old events (even carrying consent) and new events without consent stay dropped
    w.send(event("a1-again", T0 + 2 * DAY, {"marketing": True}, user="u-1", email="ann@example.com"),
           event("n1", ERASED_AT + DAY, user="u-1", email="ann@example.com"),
           event("n2", ERASED_AT + DAY, {"marketing": False}, email="ann@example.com"))
    assert w.owner("user_id", "u-1") is None and w.owner("email", "ann@example.com") is None
    assert len(w.sink.changes) == before and len(w.sink.events) == sent

    # she comes back and consents: the identifiers that event carries are readmitted, a new profile
    w.send(event("back", ERASED_AT + 2 * DAY, {"marketing": True}, email="ann@example.com", anon="anon-new"))
    new = w.owner("email", "ann@example.com")
    assert new is not None and new != old and w.owner("anonymous_id", "anon-new") == new
    assert [c["type"] for c in w.sink.changes[before:]] == ["readmitted", "created"]
    readmission = w.sink.changes[before]
    assert readmission["message_id"] == "back" and len(readmission["suppressed"]) == 1  # the email's entry only

    # later events with the email pass without consent; old identifiers she did not bring stay out,
    # and an old event replayed now still changes nothing
    w.send(event("later", ERASED_AT + 3 * DAY, email="ann@example.com"),
           event("old-anon", ERASED_AT + 3 * DAY, anon="anon-1"),
           event("a2-again", T0 + DAY, user="u-1", email="ann@example.com"),
           event("old-email", T0 + 3 * DAY, email="ann@example.com"))
    assert w.owner("anonymous_id", "anon-1") is None and w.owner("user_id", "u-1") is None
    assert w.graph.graph.identifiers_of(new) == [("email", w.hasher.hash("email", "ann@example.com")), ("anonymous_id", "anon-new")]
    applied = [m for v in w.sink.events[sent:] for m in re.findall(rb'"message_id":"([^"]+)"', v)]
    assert applied == [b"back", b"later"]
