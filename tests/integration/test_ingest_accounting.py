"""Invariant 1 on the real stack: in = applied + duplicates + dead-lettered, exactly,
with every dead letter carrying the right reason and its original bytes; and invariant 7:
no raw email or phone number in any topic the project writes, nor in Redis."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis import Redis

from streams.ingest.dlq import DlqCodec
from streams.kafka.client import client_options
from streams.kafka.reading import read_to_end
from streams.kafka.topics import DLQ, PROFILE_EVENTS
from streams.profiles.bundle import decoded_items
from tests.fixtures.stack import run_cli
from touchpoint_tools.simulate.population import Population

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000


def build_records() -> tuple[list[bytes], dict[bytes, str], set[str], int]:
    """Valid events, exact and same-id duplicates, and malformed records of every reason."""
    valid = [orjson.dumps(e) for e in Population(60, seed=11).events(400, START_MS, 2000)]
    exact_dupes = valid[:40:2]
    same_id_other_body = []
    for raw in valid[1:30:3]:
        event = orjson.loads(raw)
        event["properties"] = {"note": "retried with a different body"}
        event["type"], event["event"] = "track", "Retried"
        same_id_other_body.append(orjson.dumps(event))
    big = orjson.dumps({"type": "track", "messageId": "big-1", "event": "x", "userId": "u", "properties": {"blob": "x" * 40_000}})
    malformed = {
        b"{not json": "not_json",
        b"": "not_json",
        b"\xff\xfe\x00garbage": "not_json",
        big: "too_large",
        b'{"type":"track","event":"x","userId":"u1"}': "missing_message_id",
        b'{"type":"shout","messageId":"bad-type-1","userId":"u1"}': "unknown_type",
        b'{"type":"track","messageId":"no-event-1","userId":"u1"}': "schema_violation",
        b'{"type":"track","messageId":"bad-channel-1","event":"x","userId":"u1","channel":"fax"}': "schema_violation",
        b'{"type":"identify","messageId":"bad-email-1","traits":{"email":["leak.me@example.com"]}}': "schema_violation",
        b'[{"type":"track"}]': "schema_violation",
        b'{"type":"track","messageId":"anon-1","event":"x"}': "no_identifier",
        b'{"type":"identify","messageId":"anon-2","traits":{"email":"not-an-email"}}': "no_identifier",
    }
    records = valid + exact_dupes + same_id_other_body + list(malformed)
    unique_ids = {orjson.loads(r)["messageId"] for r in valid}
    duplicates = len(exact_dupes) + len(same_id_other_body)
    return records, malformed, unique_ids, duplicates


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_every_record_is_applied_duplicate_or_dead_lettered(settings, start_worker, tmp_path):
    records, malformed, unique_ids, duplicates = build_records()
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    assert not any(b"\n" in r for r in records)

    worker = start_worker(settings)
    sent = run_cli(settings, "send", str(path))
    assert sent.returncode == 0, sent.stderr.decode()
    idle = run_cli(settings, "wait-idle", "--timeout", "90")
    assert idle.returncode == 0, idle.stderr.decode() + worker.log_tail()

    async def collect():
        values = [v async for r in read_to_end(settings, settings.topic(PROFILE_EVENTS)) for _, v in decoded_items(r.key, r.value)]
        # Merge instructions and events the profiles stage forwards to a survivor ("fwd") travel on
        # the same topic; what ingest applied is the rest.
        applied = [v for v in values if "control" not in v and "fwd" not in v]
        letters = [r async for r in read_to_end(settings, settings.topic(DLQ))]
        return applied, letters

    applied, letters = asyncio.run(collect())
    applied_ids = [e["message_id"] for e in applied]
    twice = Counter(applied_ids)
    assert len(applied_ids) == len(set(applied_ids)), ("an event was applied twice", sorted(
        (e["message_id"], e.get("source"), e.get("profile_id")) for e in applied if twice[e["message_id"]] > 1)[:12])
    assert set(applied_ids) == unique_ids

    codec = DlqCodec(settings.pii_key, settings.dlq_encrypt)
    seen = Counter()
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        original = codec.open(letter.value, headers["tp.encoding"])
        assert original in malformed, original[:80]
        assert headers["tp.reason"] == malformed[original], (original[:80], headers)
        assert headers["tp.source.topic"] == settings.topic("touchpoints")
        assert int(headers["tp.source.offset"]) >= 0 and headers["tp.message"]
        seen[original] += 1
    assert seen == Counter({raw: 1 for raw in malformed}), "each malformed record dead-lettered exactly once"

    # The same accounting as the worker reports it, and as `dlq summary` reports it.
    status, body = worker.get("/metrics")
    text = body.decode()
    assert status == 200
    counted = {o: metric(text, "touchpoint_events_total", outcome=o) for o in ("applied", "duplicate", "dead_lettered")}
    assert counted == {"applied": len(unique_ids), "duplicate": duplicates, "dead_lettered": len(malformed)}
    assert sum(counted.values()) == len(records)
    summary = run_cli(settings, "dlq", "summary", "--json")
    assert summary.returncode == 0, summary.stderr.decode()
    assert orjson.loads(summary.stdout) == dict(Counter(malformed.values()))

    # Re-sending everything changes nothing downstream (invariant 2): all duplicates or dead letters again.
    again = run_cli(settings, "send", str(path))
    assert again.returncode == 0
    assert run_cli(settings, "wait-idle", "--timeout", "90").returncode == 0
    applied_after, _ = asyncio.run(collect())
    assert len(applied_after) == len(applied)


def test_no_raw_email_or_phone_anywhere(settings, start_worker, tmp_path):
    population = Population(40, seed=5)
    events = list(population.events(300, START_MS, 1000))
    path = tmp_path / "pii.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n" + b'{"broken": "leak.me@example.com", "phone": "+86 138 0000 0001"\n')
    # Every spelling a leak could take: as sent, normalised, digits only.
    needles = set()
    for person in population.people:
        needles.update({person.email.encode(), person.email.lower().encode()})
        digits = re.sub(r"\D", "", person.phone)
        needles.update({person.phone.encode(), ("+" + digits).encode(), digits[2:].encode()})
    needles.add(b"leak.me@example.com")
    assert any(n in path.read_bytes() for n in needles)  # the input does carry PII

    start_worker(settings)
    assert run_cli(settings, "send", str(path)).returncode == 0
    assert run_cli(settings, "wait-idle", "--timeout", "90").returncode == 0

    async def scan_topics() -> dict[str, int]:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            # Every topic the project writes: all of the namespace's but the input, which upstream apps write.
            topics = [t for t in await admin.list_topics() if t.startswith(settings.namespace + ".") and t != settings.topic("touchpoints")]
        finally:
            await admin.close()
        counts = {}
        for topic in topics:
            n = 0
            async for record in read_to_end(settings, topic):
                blob = (record.key or b"") + (record.value or b"") + b"".join(v for _, v in record.headers or ())
                leaked = [needle for needle in needles if needle in blob]
                assert not leaked, f"raw PII {leaked[:2]} in {topic}"
                n += 1
            counts[topic] = n
        return counts

    counts = asyncio.run(scan_topics())
    assert counts[settings.topic(PROFILE_EVENTS)] > 0 and counts[settings.topic(DLQ)] == 1
    redis = Redis.from_url(settings.redis_url)
    keys = list(redis.scan_iter(match=settings.redis_prefix + "*", count=1000))
    assert keys
    for key in keys:
        blob = key + (redis.dump(key) or b"")
        assert not any(needle in blob for needle in needles), key
