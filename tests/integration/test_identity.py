"""Identity on the real stack: stitching across channels, the audit trail, explain, erasure
that holds across a replay (invariant 5), and re-sending that changes nothing (invariant 2)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from urllib.parse import quote

import orjson
import pytest
from redis import Redis

from streams.identity.data_keys import read_changes
from streams.identity.identifiers import stored_identifier
from streams.identity.sealing import names_in
from streams.ingest.pii import PiiHasher
from streams.kafka.reading import read_to_end
from streams.kafka.topics import IDENTITY_CHANGES, IDENTITY_KEYS, PROFILE_EVENTS
from streams.profiles.bundle import decoded_items
from tests.fixtures.stack import run_cli

pytestmark = pytest.mark.integration
STORE = "13800000000"
ANN = ("user_id:u-1", "anonymous_id:anon-1", "wechat_openid:open-1", "pos_card_id:POS1", "order_id:o-1")


def events() -> list[bytes]:
    e = [
        {"type": "page", "messageId": "w1", "anonymousId": "anon-1", "channel": "web", "name": "home"},
        {"type": "identify", "messageId": "w2", "anonymousId": "anon-1", "userId": "u-1", "channel": "web", "traits": {"email": "Ann@Example.com"}},
        {"type": "track", "messageId": "m1", "event": "Product Viewed", "channel": "miniprogram",
         "context": {"externalIds": [{"id": "open-1", "type": "wechat_openid"}]}},
        {"type": "identify", "messageId": "m2", "channel": "miniprogram", "traits": {"phone": "138 0000 1111"},
         "context": {"externalIds": [{"id": "open-1", "type": "wechat_openid"}], "traits": {"email": " ann@example.COM"}}},
        {"type": "track", "messageId": "p1", "event": "Order Completed", "channel": "pos", "context": {"traits": {"phone": "+86 13800001111"},
         "externalIds": [{"id": "POS1", "type": "pos_card_id"}]}, "properties": {"order_id": "o-1", "revenue": 9.9, "currency": "CNY"}},
        # another person who shares a device with Ann: unique user ids never merge (invariant 4)
        {"type": "identify", "messageId": "b1", "userId": "u-2", "context": {"device": {"id": "shared-dev"}}},
        {"type": "identify", "messageId": "b2", "userId": "u-1", "context": {"device": {"id": "shared-dev"}}},
        {"type": "identify", "messageId": "x1", "userId": "anonymous", "anonymousId": "null"},
    ]
    return [orjson.dumps(x) for x in e]


def test_stitch_explain_erase_and_replay(settings, start_worker, tmp_path):
    path = tmp_path / "identity.jsonl"
    worker = start_worker(settings)
    # Two batches: the web visitor and the mini-program user first, then what joins them.
    first, rest = [events()[0], events()[2]], [e for i, e in enumerate(events()) if i not in (0, 2)]
    for batch in (first, rest):
        path.write_bytes(b"\n".join(batch) + b"\n")
        assert run_cli(settings, "send", str(path)).returncode == 0
        assert run_cli(settings, "wait-idle", "--timeout", "60").returncode == 0

    hasher = PiiHasher(settings.pii_key)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)

    def profile(text: str) -> str | None:
        kind, value = stored_identifier(text, hasher)
        return redis.get(f"{settings.namespace}:id:{kind}:{value}")

    ann = profile("user_id:u-1")
    assert ann is not None
    for other in ("anonymous_id:anon-1", "email:ann@example.com", "wechat_openid:open-1", "phone:13800001111", "pos_card_id:POS1", "order_id:o-1"):
        assert profile(other) == ann, other
    assert profile("user_id:u-2") not in (None, ann)
    assert profile("user_id:anonymous") is None and profile("anonymous_id:null") is None

    status, body = worker.get("/identity/why?a=user_id:u-1&b=pos_card_id:POS1")
    assert status == 200
    why = json.loads(body)
    assert why["linked"] and why["chain"] and all(link["message_id"] for link in why["chain"])
    status, body = worker.get("/identity/why?a=user_id:u-1&b=user_id:u-2")
    assert status == 200 and json.loads(body)["linked"] is False
    status, body = worker.get("/identity/why?a=passport:1&b=user_id:u-1")
    assert status == 400 and b"unknown identifier type" in body

    async def audit() -> list[dict]:
        return [orjson.loads(r.value) async for r in read_to_end(settings, settings.topic(IDENTITY_CHANGES))]

    changes = asyncio.run(audit())
    raw_changes = b"".join(orjson.dumps(c) for c in changes)
    for f in ANN:  # identifiers are sealed on the audit trail (crypto-shredding)...
        assert b'"' + f.encode() + b'"' not in raw_changes, f
    opened = asyncio.run(read_changes(settings))
    names = {n for rec, _ in opened for n in names_in(rec)}
    assert {"user_id:u-1", "user_id:u-2", "pos_card_id:POS1", "order_id:o-1"} <= names  # ...and open with their keys
    changes = [rec for rec, _ in opened]
    kinds = {c["type"] for c in changes}
    assert {"created", "linked", "merged", "conflict", "blocked"} <= kinds, kinds
    assert all(c.get("message_id") for c in changes)
    text = json.dumps(changes)
    assert "ann@example.com" not in text.lower() and "13800001111" not in text

    # Erase Ann by her email as typed; her whole component goes, and a replay does not bring it back.
    erased = run_cli(settings, "erase", "--id", "email:ANN@example.com")
    assert erased.returncode == 0, erased.stderr.decode()
    result = json.loads(erased.stdout)
    assert result["erased"] and result["profile_id"] == ann and result["identifiers"] >= 7
    for gone in ("user_id:u-1", "anonymous_id:anon-1", "phone:13800001111", "pos_card_id:POS1"):
        assert profile(gone) is None, gone
    assert profile("user_id:u-2") is not None  # the other person is untouched

    replay = [orjson.loads(r) for r in events()[:5]]
    for e in replay:
        e["messageId"] += "-replayed"   # even as new records, old identifiers stay suppressed
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in replay) + b"\n" + b"\n".join(events()) + b"\n")
    assert run_cli(settings, "send", str(path)).returncode == 0
    assert run_cli(settings, "wait-idle", "--timeout", "60").returncode == 0
    for gone in ("user_id:u-1", "email:ann@example.com", "wechat_openid:open-1"):
        assert profile(gone) is None, gone

    async def records(name: str) -> list:
        return [r async for r in read_to_end(settings, settings.topic(name))]

    async def profile_events() -> list[dict]:
        return [v async for r in read_to_end(settings, settings.topic(PROFILE_EVENTS)) for _, v in decoded_items(r.key, r.value)]

    after = asyncio.run(profile_events())
    assert not [e for e in after if str(e.get("message_id", "")).endswith("-replayed") and "control" not in e]
    assert any(e.get("control") == "erase" and e["profile_id"] == ann for e in after)

    # After the erasure her records on identity.changes are unreadable: her keys were shredded.
    opened = asyncio.run(read_changes(settings))
    names = {n for rec, _ in opened for n in names_in(rec)}
    assert not names & set(ANN), names & set(ANN)
    assert "user_id:u-2" in names and "user_id:[erased]" in names
    assert sum(rec.get("unreadable", 0) for rec, _ in opened) >= 7
    erasure = [rec for rec, _ in opened if rec["type"] == "erased"]
    assert len(erasure) == 1 and len(erasure[0]["suppressed"]) >= 7 and erasure[0]["identifiers"] == []
    raw = b"".join(r.value or b"" for r in asyncio.run(records(IDENTITY_CHANGES)))
    assert not any(d.encode() in raw for d in erasure[0]["suppressed"])  # the digests are sealed too
    keys = {r.key: r.value for r in asyncio.run(records(IDENTITY_KEYS))}  # compacted view: her keys are tombstones
    assert sum(v is None for v in keys.values()) >= 7

    # The way back: she returns and consents; a new profile with what that event carries, nothing old.
    back = {"type": "identify", "messageId": "back-1", "anonymousId": "anon-back", "traits": {"email": "ann@example.com"},
            "context": {"consent": {"categoryPreferences": {"marketing": True, "analytics": False}}}}
    stale = {"type": "page", "messageId": "stale-1", "userId": "u-1", "name": "home"}  # no consent: stays dropped
    path.write_bytes(orjson.dumps(stale) + b"\n" + orjson.dumps(back) + b"\n")
    assert run_cli(settings, "send", str(path)).returncode == 0
    assert run_cli(settings, "wait-idle", "--timeout", "60").returncode == 0
    again = profile("email:ann@example.com")
    assert again is not None and again != ann and profile("anonymous_id:anon-back") == again
    for gone in ("user_id:u-1", "anonymous_id:anon-1", "pos_card_id:POS1"):
        assert profile(gone) is None, gone
    exported = run_cli(settings, "export", "--id", "email:Ann@Example.com")
    assert exported.returncode == 0, exported.stderr.decode()
    doc = orjson.loads(exported.stdout)
    assert doc["profile_id"] == again and doc["consent"] == {"analytics": False, "marketing": True}
    assert doc["profile"]["consent"] == doc["consent"] and len(doc["identifiers"]) == 2
    assert all("[erased]" not in n for r in doc["audit"] for n in names_in(r))

    # The worker's HTTP erasure shreds too: the other person's records become unreadable.
    request = urllib.request.Request(f"{worker.url}/identity/erase?id=user_id:u-2", method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200 and json.loads(resp.read())["erased"]
    names = {n for rec, _ in asyncio.run(read_changes(settings)) for n in names_in(rec)}
    assert "user_id:u-2" not in names and "device_id:shared-dev" not in names

    bad = run_cli(settings, "erase", "--id", "email:not-an-email")
    assert bad.returncode == 2 and b"not a usable email" in bad.stderr


def test_trap_population_on_the_real_stack(settings, start_worker, tmp_path):
    """Issue 17: placeholders, a shared store phone, a shared tablet, cross-source orders, PII
    where it is not expected and per-app openids, through Kafka, a worker and Redis, with the
    rules from a file: every customer exactly one profile holding exactly their identifiers,
    the profiles agree with the graph, nothing raw anywhere, refusals audited and counted."""
    from streams.identity.model import fmt
    from tests.unit.identity.trap_population import PLACEHOLDERS, trap_traffic

    rules_path = tmp_path / "rules.toml"
    rules_path.write_text("[blocked.types.device_id]\nextra_patterns = ['kiosk-.*']\n")
    settings = settings.with_(identity_rules=str(rules_path))
    traffic = trap_traffic(seed=23)
    kiosk = {"type": "track", "messageId": "kiosk-1", "event": "Product Viewed", "userId": "kiosk-user",
             "context": {"device": {"id": "kiosk-7"}}}
    path = tmp_path / "traps.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in [*traffic.events, kiosk]) + b"\n")
    worker = start_worker(settings)
    assert run_cli(settings, "send", str(path)).returncode == 0
    idle = run_cli(settings, "wait-idle", "--timeout", "90", "--settle", "2")
    assert idle.returncode == 0, idle.stderr.decode() + worker.log_tail()

    hasher = PiiHasher(settings.pii_key)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    ns = settings.namespace

    def owner(ident) -> str | None:
        return redis.get(f"{ns}:id:{fmt(ident)}")

    shared = {stored_identifier(s, hasher) for s in traffic.shared}
    owners = []
    for ids in traffic.expected(hasher):
        pids = {owner(i) for i in ids}
        assert len(pids) == 1 and None not in pids, sorted(ids)
        pid = pids.pop()
        owners.append(pid)
        held = {tuple(k.split(":", 1)) for k in redis.hkeys(f"{ns}:p:{pid}")}
        assert held - shared == ids
    assert len(set(owners)) == len(owners)
    for text in PLACEHOLDERS:
        kind, _, raw = text.partition(":")
        assert owner((kind, raw)) is None
    assert redis.exists(f"{ns}:quar:phone:{hasher.hash('phone', '+8613800000000')}")
    assert owner(("device_id", "kiosk-7")) is None and owner(("user_id", "kiosk-user")) is not None  # the file's rule

    # the profiles agree with the graph and count every event of each customer
    result = run_cli(settings, "profiles", "dump")
    assert result.returncode == 0, result.stderr.decode()
    profiles = {p["profile_id"]: p for p in (orjson.loads(x) for x in result.stdout.splitlines() if x.strip())}
    for c, pid in zip([c for c in traffic.customers if c.identifiers], owners, strict=True):
        prof = profiles[pid]
        assert prof["event_count"] == c.events, (c.n, prof["event_count"], c.events)
        listed = {(i["type"], i["value"]) for i in prof["identifiers"]}
        graph = {tuple(k.split(":", 1)) for k in redis.hkeys(f"{ns}:p:{pid}")}
        assert listed == {i for i in graph if i[0] != "order_id"}, c.n

    # nothing raw: Redis keys, the audit trail, profile events, profiles
    async def topic(name: str) -> bytes:
        return b"".join([r.value or b"" async for r in read_to_end(settings, settings.topic(name))])

    changes = asyncio.run(topic(IDENTITY_CHANGES))
    blobs = [" ".join(redis.keys(f"{ns}:*")).encode(), changes, asyncio.run(topic(PROFILE_EVENTS)), result.stdout]
    for c in traffic.customers:
        for raw in (c.email.lower().encode(), c.phone.encode(), c.phone[3:7].encode() + b" " + c.phone[7:].encode()):
            assert not any(raw in b.lower() for b in blobs), raw
    assert not any(b"13800000000" in b or b"95588" in b for b in blobs)

    # refusals counted by reason
    metrics = worker.get("/metrics")[1].decode()
    for reason in ("invalid_phone", "blocked_value", "supernode", "unique:user_id", "blocked_pattern"):
        assert f'touchpoint_identity_refused_total{{reason="{reason}"}}' in metrics, reason

    # why: the chain for a linked pair, the refusing rule and its records for an unlinked one
    c0 = traffic.customers[0]
    linked = run_cli(settings, "identity", "why", f"email:{c0.email}", f"pos_card_id:{c0.pos_card}")
    assert linked.returncode == 0, linked.stderr.decode()
    assert orjson.loads(linked.stdout)["linked"]
    # the family tablet joins whichever of its two users the worker resolved first (they arrive on
    # different partitions): one of the two is linked, the other refused by the unique user_id rule
    answers = []
    for c in traffic.customers[:2]:
        asked = run_cli(settings, "identity", "why", f"user_id:{c.user_id}", "device_id:family-tablet-1")
        assert asked.returncode == 0, asked.stderr.decode()
        answers.append(orjson.loads(asked.stdout))
    assert sorted(a["linked"] for a in answers) == [False, True], answers
    answer = next(a for a in answers if not a["linked"])
    assert answer["rule"] == "unique:user_id"
    assert any(r["type"] == "conflict" and r["rule"] == "unique:user_id" for r in answer["records"])
    # the store phone stays with the profile that first held it; ask about a card of another customer
    store_owner = owner(stored_identifier(f"phone:{STORE}", hasher))
    people = [c for c in traffic.customers if c.identifiers]
    card = next(c.pos_card for c, pid in zip(people, owners, strict=True) if c.pos_card and pid != store_owner)
    status, body = worker.get(f"/identity/why?a=phone:{quote(STORE)}&b=pos_card_id:{card}")
    assert status == 200 and orjson.loads(body)["rule"] == "supernode"

    # export: everything held about a customer, found by a raw email
    c2 = traffic.customers[2]
    exported = run_cli(settings, "export", "--id", f"email:{c2.email.upper()}")
    assert exported.returncode == 0, exported.stderr.decode()
    doc = orjson.loads(exported.stdout)
    pid = owners[2]
    assert doc["profile_id"] == pid and doc["profile"]["event_count"] == c2.events
    assert {tuple(i.split(":", 1)) for i in doc["identifiers"]} - shared == traffic.expected(hasher)[2]
    assert doc["audit"] and all(r.get("profile_id") in {pid, *doc["merged_from"]} or r.get("from_profile_id") in {pid, *doc["merged_from"]}
                                or set(r["identifiers"]) & set(doc["identifiers"]) for r in doc["audit"])
    assert c2.email.lower().encode() not in exported.stdout.lower()
