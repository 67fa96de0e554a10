"""Split on the real stack (issue 17 item 5): undo a wrong merge and detach an identifier through
Kafka, a worker and Redis; both profiles are folded again from their own events, the split is
audited with its actor, and neither a replay nor new events join the two sides again."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import orjson
import pytest

from streams.identity.data_keys import read_changes
from streams.kafka.reading import read_to_end
from streams.kafka.topics import IDENTITY_CHANGES
from tests.fixtures.stack import run_cli

pytestmark = pytest.mark.integration


def _events() -> list[dict]:
    return [
        {"type": "identify", "messageId": "s1", "userId": "u-7", "channel": "web", "traits": {"email": "kim@example.com"},
         "context": {"device": {"id": "tablet-1"}}},
        {"type": "track", "messageId": "s2", "anonymousId": "kid-anon", "event": "Product Viewed", "channel": "app"},
        # the family tablet joins the child's anonymous visits to the parent: the wrong merge
        {"type": "track", "messageId": "s3", "anonymousId": "kid-anon", "event": "Product Viewed", "channel": "app",
         "context": {"device": {"id": "tablet-1"}}},
        {"type": "track", "messageId": "s4", "anonymousId": "kid-anon", "event": "Product Clicked", "channel": "app"},
    ]


def _send(settings, path, events) -> None:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    assert run_cli(settings, "send", str(path)).returncode == 0
    assert run_cli(settings, "wait-idle", "--timeout", "60").returncode == 0


def _profile(settings, ident: str) -> dict:
    out = run_cli(settings, "profile", "get", "--id", ident)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


def _raw_audit(settings) -> list[dict]:
    """identity.changes as stored: identifiers sealed under their data keys."""
    async def read() -> list[dict]:
        return [orjson.loads(r.value) async for r in read_to_end(settings, settings.topic(IDENTITY_CHANGES)) if r.value]
    return asyncio.run(read())


def _audit(settings) -> list[dict]:
    """identity.changes opened with the data keys, as every reader sees it."""
    return [rec for rec, _ in asyncio.run(read_changes(settings, 60))]


def _post(worker, path: str, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(worker.url + path, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_split_undoes_a_merge_refolds_both_profiles_and_holds(settings, start_worker, tmp_path):
    worker = start_worker(settings)
    events = _events()
    # One send each for the parent and the child first: the older profile survives a merge, and
    # the two events of one send may be resolved in either order (they sit on different partitions).
    _send(settings, tmp_path / "a.jsonl", events[:1])
    _send(settings, tmp_path / "b.jsonl", events[1:2])
    _send(settings, tmp_path / "c.jsonl", events[2:])
    parent = _profile(settings, "user_id:u-7")
    assert parent["event_count"] == 4 and _profile(settings, "anonymous_id:kid-anon")["profile_id"] == parent["profile_id"]
    loser = next(c["from_profile_id"] for c in _audit(settings) if c["type"] == "merged")

    out = run_cli(settings, "identity", "split", "--merge", loser, "--actor", "ops-ann")
    assert out.returncode == 0, out.stderr.decode()
    result = json.loads(out.stdout)
    assert result["moved"] == ["anonymous_id:kid-anon"] and result["profile_id"] == parent["profile_id"]
    assert run_cli(settings, "wait-idle", "--timeout", "60").returncode == 0

    def sides() -> tuple[dict, dict]:
        return _profile(settings, "user_id:u-7"), _profile(settings, "anonymous_id:kid-anon")

    kept, moved = sides()
    assert moved["profile_id"] == result["new_profile_id"] != kept["profile_id"]
    # s3 carried both: the tablet outranks the anonymous id, so it stays with the parent, without kid-anon
    assert (kept["event_count"], moved["event_count"]) == (2, 2)
    assert "anonymous_id:kid-anon" not in json.dumps(kept["identifiers"])
    assert "device_id:tablet-1" not in json.dumps(moved["identifiers"])
    split = [c for c in _audit(settings) if c["type"] == "split"]
    sealed = [c for c in _raw_audit(settings) if c["type"] == "split"]
    assert "kid-anon" not in json.dumps(sealed) and "tablet-1" not in json.dumps(sealed)  # sealed like every audit record
    assert len(split) == 1 and split[0]["actor"] == "ops-ann" and split[0]["identifiers"] == ["anonymous_id:kid-anon"]

    # a replay of the same events changes nothing; the same pair in a new event is refused
    _send(settings, tmp_path / "replay.jsonl", events)
    assert sides() == (kept, moved)
    _send(settings, tmp_path / "again.jsonl", [{**events[2], "messageId": "s5"}])
    kept2, moved2 = sides()
    assert kept2["profile_id"] == kept["profile_id"] and moved2["profile_id"] == moved["profile_id"]
    assert (kept2["event_count"], moved2["event_count"]) == (3, 2)
    assert any(c["type"] == "conflict" and c["rule"] == "split" and c["message_id"] == "s5" for c in _audit(settings))

    # the HTTP route: detach the parent's email; guarded like the other write routes
    assert _post(worker, "/identity/split?id=email:kim@example.com")[0] == 400  # no actor
    assert _post(worker, "/identity/split?id=email:kim@example.com&actor=x", {"Origin": "https://evil.example"})[0] == 403
    status, body = _post(worker, "/identity/split?id=email:KIM@example.com&actor=ops-bob")
    assert status == 200, body
    assert run_cli(settings, "wait-idle", "--timeout", "60").returncode == 0
    email = _profile(settings, "email:kim@example.com")
    # s1, the email's only event, also carried the user id, which outranks it: s1 stays with u-7
    assert email["profile_id"] == body["new_profile_id"] and email["event_count"] == 0
    assert _profile(settings, "user_id:u-7")["event_count"] == 3  # s1, s3, s5
    assert _post(worker, "/identity/split?id=email:kim@example.com&actor=ops-bob")[0] == 409  # nothing would stay

    # bad input: one line and exit 2; a split the graph refuses: exit 1, nothing changed
    bad = run_cli(settings, "identity", "split", "--id", "email:not-an-email", "--actor", "x")
    assert bad.returncode == 2 and b"not a usable email" in bad.stderr
    bad = run_cli(settings, "identity", "split", "--merge", "p999", "--actor", "x")
    assert bad.returncode == 2 and b"no merged record" in bad.stderr
    refused = run_cli(settings, "identity", "split", "--link", "user_id:u-7", "anonymous_id:kid-anon", "--actor", "x")
    assert refused.returncode == 1 and b"are not two identifiers of one profile" in refused.stderr
