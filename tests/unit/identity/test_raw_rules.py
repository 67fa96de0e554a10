"""Placeholders, validity and PII by value, decided on the raw value before hashing (issue 17
item 1, issue 21 item 4): through the real ingest stage with the in-memory identity twin."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streams.identity.identifiers import RefusedIdentifier, stored_identifier
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.rules import IdentityRules
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher, check_phone, normalize_email
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics
from streams.profiles.bundle import unbundle

NOW = 1_767_225_600_000
HASHER = PiiHasher("k")
NORM = Normalizer(HASHER, "CN")


class _Graph:
    def __init__(self, rules: IdentityRules) -> None:
        self.graph = MemoryIdentityGraph(rules)

    async def resolve_batch(self, requests: Any) -> Any:
        return self.graph.resolve_batch(requests)


class _Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.letters: list[Any] = []
        self.raw: list[bytes] = []

    async def identity_change(self, key: bytes, value: bytes) -> None:
        self.raw.append(key + value)
        self.changes.append(orjson.loads(value))

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.raw.append(key + value)
        self.events.extend(v if isinstance(v, dict) else orjson.loads(v) for _, v in unbundle(key, value))

    async def dead_letter(self, letter: Any) -> None:
        self.letters.append(letter)

    async def demand(self, key: bytes, value: bytes) -> None:
        return None


def run(events: list[dict[str, Any]], rules: IdentityRules | None = None) -> tuple[_Sink, Metrics, MemoryIdentityGraph]:
    rules = rules or IdentityRules()
    sink, metrics, graph = _Sink(), Metrics(), _Graph(rules)
    stage = IngestStage(max_event_bytes=8192, normalizer=Normalizer(HASHER, "CN", rules=rules), resolver=graph,
                        codec=DlqCodec("k", encrypt=False), sink=sink, metrics=metrics, clock_ms=lambda: NOW)
    recs = [RawRecord(orjson.dumps(e), "ns.touchpoints", 0, i) for i, e in enumerate(events)]
    asyncio.run(stage.process_batch(recs))
    return sink, metrics, graph.graph


def refused_metric(metrics: Metrics, reason: str) -> float:
    return metrics.identity_refused.labels(reason)._value.get()


@pytest.mark.parametrize(("raw", "reason"), [
    ("00000000000", "invalid_phone"), ("000-0000-0000", "invalid_phone"), ("12345", "invalid_phone"),
    ("95588", "invalid_phone"), ("10086", "invalid_phone"), ("400 812 3123", "service_phone"), ("800 810 1234", "service_phone"),
    ("+1 415 555 0123", "blocked_pattern"), ("+86 133 3333 3333", None), ("138 0013 8000", None), ("+86 138 0000 0000", None),
])
def test_phone_rules_on_the_raw_number(raw: str, reason: str | None) -> None:
    value = NORM._pii("phone", raw)
    assert value is not None
    if reason is None:
        assert not value.startswith("!") and len(value) == 32
    else:
        assert value.startswith(f"!{reason}:") and raw.replace(" ", "") not in value


@pytest.mark.parametrize("raw", ["test@test.com", "TEST@Test.com", "noreply@shop.cn", "a@a.com", "x@localhost", "nope"])
def test_placeholder_emails_are_refused(raw: str) -> None:
    assert NORM._pii("email", raw).startswith("!")


def test_placeholder_phones_never_join_two_people_and_are_audited_hashed() -> None:
    events = [{"type": "identify", "messageId": f"m{i}", "userId": f"u{i}", "traits": {"phone": phone, "email": "test@test.com"}}
              for i, phone in enumerate(["00000000000", "000-0000-0000", "12345", "95588", "12345"])]
    sink, metrics, graph = run(events)
    pids = {e["profile_id"] for e in sink.events}
    assert len(pids) == 5  # five people, nothing linked them
    refused = [c for c in sink.changes if c["type"] == "blocked"]
    assert {c["rule"] for c in refused} == {"invalid_phone", "blocked_value"}
    for c in refused:  # recorded with the keyed hash only
        kind, _, value = c["identifiers"][0].partition(":")
        assert kind in ("phone", "email") and len(value) == 32 and not value.startswith("!")
    blob = b"".join(sink.raw)
    for raw in (b"00000000000", b"12345", b"95588", b"test@test.com"):
        assert raw not in blob
    assert refused_metric(metrics, "invalid_phone") == 5 and refused_metric(metrics, "blocked_value") == 5
    # the emitted events carry only what the graph linked
    assert all(not any(i.startswith(("phone:", "email:")) for i in e["identifiers"]) for e in sink.events)


def test_event_with_only_refused_identifiers_is_dead_lettered_and_audited() -> None:
    sink, metrics, _ = run([{"type": "identify", "messageId": "m1", "traits": {"phone": "95588"}}])
    assert not sink.events and len(sink.letters) == 1
    assert [c["rule"] for c in sink.changes] == ["invalid_phone"]


def test_rules_file_lists_refuse_extra_values() -> None:
    rules = IdentityRules(type_blocked_values={"phone": ("+8613800138000",)})
    assert NORM._pii("phone", "13800138000") is not None and not NORM._pii("phone", "13800138000").startswith("!")
    assert Normalizer(HASHER, "CN", rules=rules)._pii("phone", "138 0013 8000").startswith("!blocked_value:")


# -- PII by value (issue 21 item 4) ------------------------------------------------------------

PII_EVENT = {
    "type": "identify", "messageId": "p1", "userId": "Ann.Lee@Example.com", "anonymousId": "ann@example.com",
    "context": {"device": {"id": "+86 139 1234 5678"}, "traits": {"Mobile": "13912345679"},
                "externalIds": [{"id": "zoe@example.com", "type": "crm_id"}]},
    "traits": {"Email": "Ann.Lee@Example.com", "mobile": "139 1234 5670", "phoneNumber": "13912345671",
               "contact": {"email": "ann.work@example.com", "city": "Wuhan"}, "note": "call 13912345672",
               "backup": "ann.backup@example.com", "tags": ["vip", "13912345673"], "name": "Ann"},
}
RAW = [b"example.com", b"Example.com", b"1391234", b"139 1234"]


def test_pii_shaped_identifiers_and_traits_never_travel_raw() -> None:
    sink, _, graph = run([PII_EVENT])
    blob = b"".join(sink.raw)
    for raw in RAW:
        assert raw not in blob, raw
    [event] = sink.events
    ids = dict(i.split(":", 1) for i in event["identifiers"][:3])
    assert ids["user_id"] == "h:" + HASHER.hash("user_id", "ann.lee@example.com")
    assert ids["anonymous_id"] == "h:" + HASHER.hash("anonymous_id", "ann@example.com")
    assert ids["device_id"] == "h:" + HASHER.hash("device_id", "+8613912345678")
    # every spelling of an email/phone trait became an identifier (hashed), nested ones too
    kinds = [i.split(":", 1)[0] for i in event["identifiers"]]
    assert kinds.count("email") == 2 and kinds.count("phone") == 3
    assert event["traits"] == {"name": "Ann", "contact": {"city": "Wuhan"}, "note": "call [redacted phone]",
                               "backup": "[redacted email]", "tags": ["vip", "[redacted phone]"]}
    # Redis keys are what the graph holds: no raw value there either
    assert not any(b in f.encode() for f in graph._ids for b in RAW)
    # erasure by the value as typed finds the stored identifier
    assert stored_identifier("user_id:ANN.LEE@example.com", HASHER) == ("user_id", ids["user_id"])
    assert graph.lookup(stored_identifier("device_id:13912345678", HASHER)) == event["profile_id"]


def test_free_text_with_a_number_inside_is_redacted() -> None:
    sink, _, _ = run([{"type": "identify", "messageId": "n", "userId": "u",
                       "traits": {"note": "call 139-1234-5672 or mail Ann <ann@example.com>", "n": 13912345674, "age": 42}}])
    traits = sink.events[0]["traits"]
    assert traits == {"note": "call [redacted phone] or mail Ann <[redacted email]>", "n": "[redacted phone]", "age": 42}


def test_emails_are_unicode_normalised_before_hashing() -> None:
    forms = ["ann@example.com", "ann\u200b@example.com", "\ufeffANN@EXAMPLE.COM", "ａｎｎ@ｅｘａｍｐｌｅ.ｃｏｍ", "an\u00adn@example.com"]
    assert {normalize_email(f) for f in forms} == {"ann@example.com"}
    sink, _, graph = run([{"type": "identify", "messageId": f"m{i}", "traits": {"email": f}} for i, f in enumerate(forms)])
    assert len({e["profile_id"] for e in sink.events}) == 1  # one person
    # erasure by any spelling finds them
    assert graph.erase(stored_identifier("email:ANN\u200b@example.com", HASHER)).profile_id == sink.events[0]["profile_id"]


def test_stored_identifier_refuses_what_ingest_refuses() -> None:
    with pytest.raises(RefusedIdentifier, match="invalid_phone"):
        stored_identifier("phone:95588", HASHER)
    assert check_phone("13912345678", "CN") == ("+8613912345678", None)


def test_wechat_openids_are_scoped_by_app_and_unionids_join_apps() -> None:
    def wx(mid: str, openid: str, app: str | None, unionid: str | None = None) -> dict[str, Any]:
        ext: list[dict[str, Any]] = [{"id": openid, "type": "wechat_openid", **({"collection": app} if app else {})}]
        if unionid:
            ext.append({"id": unionid, "type": "wechat_unionid"})
        return {"type": "track", "messageId": mid, "event": "Product Viewed", "context": {"externalIds": ext}}

    # the same raw openid in two mini-programs belongs to two different people
    sink, _, graph = run([wx("a", "oSAME", "wx-shop"), wx("b", "oSAME", "wx-club"),
                          wx("c", "oANN1", "wx-shop", "unANN"), wx("d", "oANN2", "wx-club", "unANN")])
    ids = [e["identifiers"] for e in sink.events if "control" not in e]
    assert ids[0] == ["wechat_openid:wx-shop/oSAME"] and ids[1] == ["wechat_openid:wx-club/oSAME"]
    assert graph.lookup(("wechat_openid", "wx-shop/oSAME")) != graph.lookup(("wechat_openid", "wx-club/oSAME"))
    # one person's openids in two apps are joined by the unionid
    assert graph.lookup(("wechat_openid", "wx-shop/oANN1")) == graph.lookup(("wechat_openid", "wx-club/oANN2"))
    # an app id may also come as appId; none keeps the old unscoped value
    assert NORM.normalize(wx("e", "o1", None), NOW).identifiers == (("wechat_openid", "o1"),)
    ev = wx("f", "o1", None)
    ev["context"]["externalIds"][0]["appId"] = "wx-x"
    assert NORM.normalize(ev, NOW).identifiers == (("wechat_openid", "wx-x/o1"),)
    assert stored_identifier("wechat_openid:wx-shop/oSAME", HASHER) == ("wechat_openid", "wx-shop/oSAME")


def test_why_names_the_rule_for_a_value_ingest_refuses() -> None:
    from streams.identity.identifiers import explained_identifier

    graph = MemoryIdentityGraph(IdentityRules())
    graph.resolve_batch([])
    a = explained_identifier("phone:95588", HASHER)
    answer = graph.explain(a, ("user_id", "u1"))
    assert not answer["linked"] and answer["rule"] == "invalid_phone" and "95588" not in str(answer)
