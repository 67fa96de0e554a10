"""Hostile records straight from Kafka (issue 21 Medium 6 and the Low list).

- Nesting deeper than orjson can write (254 levels) decoded fine, resolved its identity in Redis,
  then failed to serialise: a ``processing_error`` dead letter and an identifier mapped to a
  profile that never existed. Now ``too_deep`` at decode, before identity resolution.
- A control character in a messageId broke the identity provenance encoding (``/identity/why``
  answered 500 for that profile for good).
- A dead letter's ``tp.message`` header (not sealed) quoted the offending value.
"""

from __future__ import annotations

import asyncio

import orjson

from streams.events.reasons import Reason, Rejected
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import LINK_SEP, provenance_path
from streams.identity.rules import IdentityRules
from streams.ingest.decode import MAX_DEPTH, decode
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics

NOW = 1_767_225_600_000


def event(i: int, **extra: object) -> bytes:
    return orjson.dumps({"type": "track", "messageId": f"m{i}", "event": "Viewed", "userId": f"u{i}", **extra})


def nested(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def with_raw(raw_event: bytes, field: str, raw: bytes) -> bytes:
    return raw_event[:-1] + b',"' + field.encode() + b'":' + raw + b"}"


class RecordingGraph:
    def __init__(self) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())
        self.resolved: list[str] = []

    async def resolve_batch(self, requests):
        self.resolved += [r.message_id for r in requests]
        return self.graph.resolve_batch(requests)


class Sink:
    def __init__(self) -> None:
        self.letters: list = []

    async def applied(self, key, value, partition=None):
        pass

    async def dead_letter(self, letter):
        self.letters.append(letter)

    async def demand(self, key, value):
        pass

    async def identity_change(self, key, value):
        pass


def test_nesting_beyond_the_limit_is_too_deep_and_within_it_is_fine():
    for levels, deep in ((MAX_DEPTH - 2, False), (MAX_DEPTH + 1, True), (300, True), (1000, True)):
        result = decode(with_raw(event(1), "properties", nested(levels)), 1 << 20)
        assert isinstance(result, Rejected) == deep, levels
        if deep:
            assert result.reason is Reason.TOO_DEEP and str(MAX_DEPTH) in result.message
    # arrays count too, and brackets inside strings do not
    assert decode(with_raw(event(1), "p", b"[" * 80 + b"]" * 80), 1 << 20).reason is Reason.TOO_DEEP
    assert isinstance(decode(event(1, event_note="{" * 500), 1 << 20), dict)


def test_too_deep_is_dead_lettered_before_identity_resolution():
    graph, sink, metrics = RecordingGraph(), Sink(), Metrics()
    stage = IngestStage(max_event_bytes=1 << 20, normalizer=Normalizer(PiiHasher("k")), resolver=graph,
                        codec=DlqCodec("k"), sink=sink, metrics=metrics, clock_ms=lambda: NOW)
    deep = with_raw(event(2), "properties", nested(300))
    asyncio.run(stage.process_batch([RawRecord(event(1), "t", 0, 0, NOW), RawRecord(deep, "t", 0, 1, NOW)]))
    assert graph.resolved == ["m1"]  # the deep record never reached the identity graph
    assert graph.graph.lookup(("user_id", "u2")) is None
    assert [dict(letter.headers)["tp.reason"] for letter in sink.letters] == [b"too_deep"]
    assert metrics.dead_by_reason[Reason.TOO_DEEP]._value.get() == 1


def test_a_control_character_in_a_message_id_is_refused_and_old_links_still_explain():
    result = decode(orjson.dumps({"type": "track", "messageId": "m\u001fx", "event": "V", "userId": "u"}), 32768)
    assert isinstance(result, Rejected) and result.reason is Reason.SCHEMA_VIOLATION and "messageId" in result.message
    # a link recorded before the schema refused them still parses (it raised ValueError: /identity/why 500)
    links = {"user_id:a": LINK_SEP.join(("", "m0", "first", "1")),
             "user_id:b": LINK_SEP.join(("user_id:a", "m\u001fx", "co_occurrence", "2"))}
    bridges = [LINK_SEP.join(("user_id:b", "user_id:c", "n\u001f\u001fy", "merge", "3"))]
    links["user_id:c"] = LINK_SEP.join(("", "m9", "first", "3"))
    chain = provenance_path(links, bridges, "user_id:a", "user_id:c")
    assert [(s["from"], s["to"], s["message_id"]) for s in chain] == [("user_id:a", "user_id:b", "m\u001fx"),
                                                                      ("user_id:b", "user_id:c", "n\u001f\u001fy")]


def test_dead_letter_messages_never_quote_the_value():
    codec = DlqCodec("k")
    for message in ("bad timestamp: Invalid isoformat string: 'ann@example.com'",
                    'KeyError: "+8613800138000"', "type must be one of track; got 'ann@example.com"):
        letter = codec.dead_letter(b"{}", Rejected(Reason.SCHEMA_VIOLATION, message), "t", 0, 0, NOW)
        shown = dict(letter.headers)["tp.message"].decode()
        assert "ann@example.com" not in shown and "13800138000" not in shown and "…" in shown, shown
    # decode's own unknown-type message no longer quotes the type it got
    result = decode(orjson.dumps({"type": "ann@example.com", "messageId": "m"}), 32768)
    assert result.reason is Reason.UNKNOWN_TYPE and "ann@example.com" not in result.message
