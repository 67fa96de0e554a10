"""Hostile input: hypothesis fuzz of the ingest path.

Unit level (fast, many examples): ``decode`` and ``IngestStage.prepare`` never raise, and a whole
batch through ``IngestStage.process_batch`` gives every record exactly one outcome (applied,
duplicate or dead-lettered with a reason code and a message). Random bytes, deep nesting, huge
strings and arrays, wrong types, odd unicode, numbers out of range, 10k-element arrays.

Integration: a few hundred fuzzed records through a real worker: it never dies, every record is
accounted for (applied + duplicates + dead-lettered = in), and its RSS stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events.model import Touchpoint
from streams.events.reasons import Reason, Rejected
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.rules import IdentityRules
from streams.ingest.decode import decode
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics

NOW = 1_767_225_600_000
MAX_BYTES = 32768
REASONS = {r.value for r in Reason}

# -- generators of hostile records -------------------------------------------------------------

odd_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from([
    "\u202e\u0000rtl", "\ufeffbom", "e\u0301\u0301\u0301", "𝕦𝕤𝕖𝕣", "null", "NaN", "undefined", " ", "\t\n", "👩‍👩‍👧‍👦" * 5,
    "a" * 300, "\x7f\x1b[31m", "０１２", "ＡＢ@ｅｘａｍｐｌｅ．ｃｏｍ",
])
numbers = st.one_of(
    st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2 ** 53 + 1, 1e308, -1e308, 5e-324, 18446744073709551615]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(odd_text, inner, max_size=6),
                           max_leaves=30)

VALID = {"type": "track", "messageId": "m-1", "event": "Order Completed", "userId": "u1", "channel": "app",
         "timestamp": "2026-01-01T00:01:00Z",
         "context": {"traits": {"email": "Ann@Example.com", "phone": "138 0000 0001"}, "device": {"id": "d1"},
                     "externalIds": [{"id": "M1", "type": "member_id"}]},
         "properties": {"order_id": "o1", "revenue": 9.5, "currency": "CNY", "region": "hubei",
                        "products": [{"product_id": "p1", "category": "masks", "price": 3.3, "quantity": 2}]}}
PATHS = [("type",), ("messageId",), ("event",), ("userId",), ("anonymousId",), ("channel",), ("timestamp",), ("sentAt",),
         ("context",), ("context", "traits"), ("context", "traits", "email"), ("context", "traits", "phone"),
         ("context", "device"), ("context", "device", "id"), ("context", "externalIds"), ("properties",),
         ("properties", "products"), ("properties", "revenue"), ("properties", "currency"), ("properties", "order_id"),
         ("traits",), ("context", "channel"), ("properties", "region"), ("context", "store")]


def _set(doc: dict, path: tuple[str, ...], value: object) -> dict:
    doc = orjson.loads(orjson.dumps(doc))
    cur = doc
    for key in path[:-1]:
        if not isinstance(cur.get(key), dict):
            cur[key] = {}
        cur = cur[key]
    cur[path[-1]] = value
    return doc


def _dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # e.g. an integer beyond 64 bits: write it as text (still valid JSON)
        return repr(value).encode()


@st.composite
def mutated(draw) -> bytes:
    """A valid event with one field replaced by something hostile."""
    path = draw(st.sampled_from(PATHS))
    kind = draw(st.sampled_from(["value", "big_array", "huge_string", "deep", "big_number"]))
    if kind == "value":
        value = draw(json_values)
    elif kind == "big_array":
        value = [draw(scalars)] * draw(st.sampled_from([1000, 10_000]))
    elif kind == "huge_string":
        value = draw(st.sampled_from(["x", "é", "𝕏", "\u0000"])) * draw(st.sampled_from([5000, 40_000]))
    elif kind == "deep":
        depth = draw(st.sampled_from([50, 1023, 1100, 5000]))
        return _dumps(VALID)[:-1] + b',"' + "/".join(path).encode() + b'":' + b"[" * depth + b"1" + b"]" * depth + b"}"
    else:
        text = draw(st.sampled_from(["1e400", "-1e400", "123456789012345678901234567890", "1" * 400, "-0", "0.0000e-99999"]))
        return _dumps(VALID)[:-1] + b',"' + path[-1].encode() + b'":' + text.encode() + b"}"
    return _dumps(_set(VALID, path, value))


hostile = st.one_of(
    st.binary(max_size=3000),                                             # random bytes
    json_values.map(_dumps),                                              # any JSON at all
    mutated(),                                                            # a valid event with one bad field
    st.sampled_from([b"", b"null", b"[]", b"{}", b'"\\ud800"', b"\xff\xfe{}", b'{"messageId": "\\u0000"}',
                     b'{"type":"track","messageId":"m","event":"x","userId":"u","userId":"v"}']),
)


def check_outcome(result: object) -> None:
    if isinstance(result, Rejected):
        assert result.reason.value in REASONS and result.message
    else:
        assert isinstance(result, Touchpoint)
        orjson.loads(result.to_bytes())  # what travels on is valid JSON
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in result.identifiers)


@pytest.mark.system
def test_non_object_traits_is_a_schema_violation_not_a_processing_error() -> None:
    stage, _, _ = make_stage()
    raw = _dumps(_set(VALID, ("traits",), 1))
    result = stage.prepare(RawRecord(raw, "t", 0, 0, NOW), NOW)
    assert isinstance(result, Rejected) and result.reason is Reason.SCHEMA_VIOLATION


# -- unit level ------------------------------------------------------------------------------


class _Graph:
    def __init__(self) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())

    async def resolve_batch(self, requests):
        return self.graph.resolve_batch(requests)


class _Sink:
    def __init__(self) -> None:
        self.events: list = []
        self.letters: list = []

    async def applied(self, key, value):
        if not orjson.loads(value).get("control"):
            self.events.append(orjson.loads(value))

    async def dead_letter(self, letter):
        self.letters.append(letter)

    async def demand(self, key, value):
        orjson.loads(value)

    async def identity_change(self, key, value):
        orjson.loads(value)


def make_stage() -> tuple[IngestStage, _Sink, Metrics]:
    sink, metrics = _Sink(), Metrics()
    stage = IngestStage(max_event_bytes=MAX_BYTES, normalizer=Normalizer(PiiHasher("fuzz")), resolver=_Graph(),
                        codec=DlqCodec("fuzz"), sink=sink, metrics=metrics, clock_ms=lambda: NOW)
    return stage, sink, metrics


FUZZ = settings(max_examples=600, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.system
@FUZZ
@given(raw=hostile)
def test_decode_and_prepare_never_raise(raw: bytes) -> None:
    stage, _, _ = make_stage()
    decoded = decode(raw, MAX_BYTES)
    assert isinstance(decoded, dict) or (isinstance(decoded, Rejected) and decoded.reason.value in REASONS)
    check_outcome(stage.prepare(RawRecord(raw, "t", 0, 0, NOW), NOW))


@pytest.mark.system
@settings(max_examples=60, deadline=10_000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(hostile, min_size=1, max_size=30), dup=st.booleans())
def test_every_record_of_a_hostile_batch_has_one_outcome(batch: list[bytes], dup: bool) -> None:
    stage, sink, metrics = make_stage()
    batch = batch + [_dumps(VALID)] + ([_dumps(VALID)] if dup else [])
    asyncio.run(stage.process_batch([RawRecord(v, "t", 0, i, NOW) for i, v in enumerate(batch)]))
    applied, dups, dead = metrics.applied._value.get(), metrics.duplicates._value.get(), metrics.dead_lettered._value.get()
    assert applied + dups + dead + metrics.erased._value.get() == len(batch)
    assert len(sink.letters) == dead and len(sink.events) == applied
    for letter in sink.letters:
        headers = dict(letter.headers)
        assert headers["tp.reason"].decode() in REASONS and headers["tp.message"]
    assert dups >= (1 if dup else 0)
    assert len({e["message_id"] for e in sink.events}) == len(sink.events)  # no messageId applied twice


# -- integration: a real worker --------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.system
@pytest.mark.integration
def test_fuzzed_records_through_a_worker(system_stack, sys_settings, start_worker):
    from tests.system.test_crash import metric
    from tests.system.verifier import dead_letters, publish_records, wait_idle

    started = time.monotonic()
    records: list[bytes] = []

    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(raw=hostile)
    def collect(raw: bytes) -> None:
        if len(records) < 400:
            records.append(raw)

    collect()
    # plus the large ones explicitly (hypothesis shrinks towards small inputs)
    records += [_dumps(_set(VALID, ("properties", "products"), [{"product_id": "p", "category": "c"}] * 10_000)),
                _dumps(_set(VALID, ("userId",), "u" * 40_000)), b"[" * 100_000, bytes(range(256)) * 100]
    records += [_dumps(_set(VALID, ("messageId",), f"ok-{i}")) for i in range(50)]  # valid, all one person
    # A record over the topic's record limit never reaches the worker: Kafka refuses it at publish
    # (hypothesis sometimes draws 10,000 copies of a 300-character string, ~3 MB).
    records = [r for r in records if len(r) < sys_settings.max_record_bytes - 4096]
    worker = start_worker(sys_settings)
    rss_before = _rss_kb(worker.proc.pid)
    small = [r for r in records if len(r) <= 16_384]
    large = [r for r in records if len(r) > 16_384]
    for _ in range(3):  # the same hostile load three times: memory must not keep growing
        publish_records(sys_settings, small)
        for r in large:  # one per request: the broker caps a record batch at ~1 MiB (message.max.bytes)
            publish_records(sys_settings, [r])
        wait_idle(sys_settings, worker)
    rss_after = _rss_kb(worker.proc.pid)
    assert worker.proc.poll() is None, worker.log_tail()
    text = worker.get("/metrics")[1].decode()
    applied = metric(text, "touchpoint_events_total", outcome="applied")
    dup = metric(text, "touchpoint_events_total", outcome="duplicate")
    dead = metric(text, "touchpoint_events_total", outcome="dead_lettered")
    erased = metric(text, "touchpoint_events_total", outcome="erased")
    assert applied + dup + dead + erased == 3 * len(records), (applied, dup, dead, erased, 3 * len(records))
    letters = dead_letters(sys_settings)
    assert len(letters) == dead and all(h["tp.reason"] in REASONS for h in letters)
    assert metric(text, "touchpoint_events_dead_lettered_total", reason="processing_error") == 0
    unique_valid = {r for r in records if isinstance(decode(r, MAX_BYTES), dict)}
    assert applied <= len(unique_valid)
    assert rss_after < max(2 * rss_before, rss_before + 150_000), (rss_before, rss_after)
    print(f"\n[fuzz x3] {len(records)} records/round: {applied:.0f} applied, {dup:.0f} duplicates, {dead:.0f} dead-lettered;"
          f" RSS {rss_before // 1024} -> {rss_after // 1024} MiB; {time.monotonic() - started:.0f}s")


@pytest.mark.system
@pytest.mark.integration
def test_deep_nesting_and_control_characters_straight_from_kafka(system_stack, sys_settings, start_worker):
    """Issue 21 Medium 6 and Low: 300-level nesting sent straight to Kafka was a processing_error
    dead letter *after* identity resolution, leaving ``id:user_id:deep-1`` mapped in Redis to a
    profile that never existed (/profiles answered 404 "no profile <id>"); a control character in
    a messageId made /identity/why answer 500 for its profile for good."""
    from redis import Redis

    from tests.system.verifier import dead_letters, publish_records, wait_idle

    started = time.monotonic()
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    good = {"type": "identify", "messageId": "ok-1", "userId": "fine-1", "anonymousId": "anon-1", "traits": {"plan": "x"}}
    records = [
        _dumps({**VALID, "messageId": "deep-1", "userId": "deep-1"})[:-1] + b',"properties":' + deep + b"}",
        _dumps({**VALID, "messageId": "ctl\u001fid", "userId": "ctl-1"}),
        _dumps(good),
    ]
    worker = start_worker(sys_settings)
    publish_records(sys_settings, records)
    wait_idle(sys_settings, worker)
    reasons = sorted(h["tp.reason"] for h in dead_letters(sys_settings))
    assert reasons == ["schema_violation", "too_deep"], reasons
    redis = Redis.from_url(sys_settings.redis_url)
    try:
        keys = {k.decode() for k in redis.scan_iter(match=f"{sys_settings.namespace}:id:*")}
    finally:
        redis.close()
    assert not any("deep-1" in k or "ctl-1" in k for k in keys), keys  # nothing resolved for the refused records
    assert any(k.endswith("user_id:fine-1") for k in keys), keys
    status, body = worker.get("/profiles?id=user_id:deep-1")
    assert status == 404 and b"no profile has this" in body, body
    status, body = worker.get("/identity/why?a=user_id:fine-1&b=anonymous_id:anon-1")
    assert status == 200 and b'"linked":true' in body.replace(b" ", b""), body
    text = worker.get("/metrics")[1].decode()
    assert 'touchpoint_dead_letters_total{reason="too_deep"} 1.0' in text
    assert 'touchpoint_dead_letters_total{reason="processing_error"} 0.0' in text
    print(f"\n[hostile: deep + control chars via Kafka] dead letters {reasons}, no Redis mapping for either; {time.monotonic() - started:.0f}s")
