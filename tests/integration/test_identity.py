"""Identity on the real stack: stitching across channels, the audit trail, explain, erasure
that holds across a replay (invariant 5), and re-sending that changes nothing (invariant 2)."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from redis import Redis

from streams.identity.identifiers import stored_identifier
from streams.ingest.pii import PiiHasher
from streams.kafka.reading import read_to_end
from streams.kafka.topics import IDENTITY_CHANGES, PROFILE_EVENTS
from streams.profiles.bundle import decoded_items
from tests.fixtures.stack import run_cli

pytestmark = pytest.mark.integration


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

    async def profile_events() -> list[dict]:
        return [v async for r in read_to_end(settings, settings.topic(PROFILE_EVENTS)) for _, v in decoded_items(r.key, r.value)]

    after = asyncio.run(profile_events())
    assert not [e for e in after if str(e.get("message_id", "")).endswith("-replayed") and "control" not in e]
    assert any(e.get("control") == "erase" and e["profile_id"] == ann for e in after)

    bad = run_cli(settings, "erase", "--id", "email:not-an-email")
    assert bad.returncode == 2 and b"not a usable email" in bad.stderr
