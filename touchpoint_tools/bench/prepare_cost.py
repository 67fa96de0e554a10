"""Micro-benchmark: CPU per event of the ingest stage's pure "prepare" path, step by step.

    .venv/bin/python touchpoint_tools/bench/prepare_cost.py [--n 20000] [--repeats 5] [--dump FILE]

Times, per event of the benchmark's event mix (``touchpoint_tools.bench.pipeline.workload.make_records``):
``decode`` (size guard, JSON, schema validation: msgspec on the accept path), the same with the
fastjsonschema validator alone (``decode_reference``, the code before the msgspec path), ``Normalizer.normalize`` and
``Touchpoint.to_bytes`` (with ``profile_id`` and ``source`` set, as the stage emits it); the best
of ``--repeats`` timed passes, in microseconds per event. No Kafka, no Redis. "normalize (new
Normalizer)" starts each pass with an empty memo of hashed emails and phones; the workload has
about one person per 20 events, so most of them repeat within a pass.

``--dump FILE`` also writes one line per record (the workload plus a few thousand malformed and
edge-case records: not JSON, missing messageId, schema violations, emails and phones, externalIds,
sentAt skew, odd timestamps): the ``to_bytes()`` output or the rejection's reason and message.
Two dumps taken before and after a change must be identical (``cmp``).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from streams.events.model import Touchpoint
from streams.events.reasons import Rejected
from streams.ingest.decode import decode, decode_reference
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from touchpoint_tools.bench.pipeline.workload import make_records
from touchpoint_tools.simulate.traffic import generate

MAX_BYTES = 32768
NOW_MS = 1_764_547_200_000  # fixed "now" (2025-12-01T00:00:00Z): outputs do not depend on the clock


def make_normalizer() -> Normalizer:
    """As ``streams/app.py`` builds it (fixed key, default region and skew)."""
    return Normalizer(PiiHasher("bench-fixed-key"), "CN", 86_400_000)


def best_us(step: Callable[[], Any], n: int, repeats: int) -> float:
    """Best of ``repeats`` timed calls of ``step`` (one pass over ``n`` events), in us per event."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best * 1e6 / n


def fixed_records(n: int, rate: float = 15_000.0) -> list[bytes]:
    """``make_records(n)`` with a fixed start time instead of "ending about now": the same bytes every run."""
    args = argparse.Namespace(events=n, people=max(200, n // 20), seed=7, scenario="none", duplicates=0.0, malformed=0.0,
                              spacing_ms=1000.0 / rate)
    return list(generate(args, NOW_MS - 3_600_000))


def edge_records(base: list[bytes], n: int, seed: int = 11) -> list[bytes | None]:
    """Malformed and edge-case records: hand-written ones, then ``n`` seeded mutations of ``base``."""
    out: list[bytes | None] = [
        None, b"", b"{oops", b"\xff\xfe", b"[1, 2]", b"null", b"42", b'"s"',
        b'{"type": "track", "event": "x", "userId": "u"}',            # no messageId
        b'{"type": "track", "messageId": "", "event": "x"}',
        b'{"type": "track", "messageId": null, "event": "x"}',
        b'{"type": "shout", "messageId": "m"}', b'{"type": 7, "messageId": "m"}', b'{"messageId": "m"}',
        b'{"type": "track", "messageId": "m"}',                       # track needs event
        b'{"type": "alias", "messageId": "m", "userId": "u"}',        # alias needs previousId
        b'{"type": "alias", "messageId": "m", "userId": "u", "previousId": "a"}',
        b'{"type": "group", "messageId": "m", "userId": "u", "groupId": 5}',
        b'{"type": "identify", "messageId": "m"}',                    # no identifier
        b'{"type": "track", "messageId": "m", "event": "e", "userId": " "}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": 5.0, "anonymousId": 0}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": true}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "a\\u0001b"}',
        b'{"type": "page", "messageId": "m", "userId": "u", "properties": {"total": 3, "currency": "usd", "store_id": 4}}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "properties": {"products": [{"price": -1}]}}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "properties": {"products": [1]}}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "properties": {"products": [{"product_id": 7.0, "quantity": 2.0}]}}',
        b'{"type": "track", "messageId": "m", "event": "e", "context": {"externalIds": [{"id": "x", "type": "passport"}]}}',
        b'{"type": "track", "messageId": "m", "event": "e", "context": {"traits": {"email": 12345678}}}',
        b'{"type": "identify", "messageId": "m", "traits": {"phone": 13812345678, "email": "A@B.CO"}}',
        b'{"type": "identify", "messageId": "m", "traits": {"email": "nope", "phone": "12"}}',
        b'{"type": "identify", "messageId": "m", "traits": {"email": "a b@c.d", "phone": ""}, "userId": "u"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "2026-01-01T00:00:60Z"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "2024-02-29T23:59:59.999999+14:00"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "0001-01-01T00:00:00+01:00"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "9999-12-31T23:59:59-23:59"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "1969-12-31T23:59:59.9995Z"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "2026-01-01T00:00:00.1234567Z"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "timestamp": "", "originalTimestamp": "2026-01-01T00:00:00Z"}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "properties": {"order_id": 0, "revenue": 0}}',
        b'{"type": "track", "messageId": "m", "event": "e", "userId": "u", "context": {"externalIds": []}, "traits": {}}',
        b'{"type": "track", "messageId": "m", "event": "e", "properties": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}",
        orjson.dumps({"type": "track", "messageId": "m", "event": "e", "properties": {"blob": "x" * MAX_BYTES}}),
    ]
    rng = random.Random(seed)
    stamps = ["2026-11-30T21:04:51.910Z", "2026-11-30T21:04:51Z", "2026-11-30T21:04:51.5Z", "2026-11-30T21:04:51.123456Z",
              "2026-11-30T21:04:51.910+08:00", "2026-11-30T21:04:51-0130", "2026-11-30t21:04:51.910z", "2026-11-30T21:04:51.91Z",
              "2026-02-29T00:00:00Z", "2024-02-29T00:00:00.000Z", "2026-13-01T00:00:00Z", "2026-11-30T24:00:00Z",
              "2026-11-30 21:04:51Z", "2026-11-30T21:04:51", "2026-11-30T21:04:60.000Z", "1970-01-01T00:00:00.000Z",
              "1960-06-15T12:30:00.001Z", "2026-11-30T21:04:51.000000001Z", "yesterday", "２026-11-30T21:04:51Z"]
    emails = ["Person.1@Example.com", "  a@b.co ", "nope", "a@b", "x@.com", "x@com.", "A B@c.de", "", "ünï@cödé.cn", 7]
    phones = ["+86 138 0000 0074", "13812345678", 13812345678, "12", "", "+1 (415) 555-2671", "hello", "+8613812345678", 0, "1" * 70]
    ext_types = ["user_id", "email", "phone", "member_id", "wechat_openid", "order_id", "passport", "device_id"]
    for _ in range(n):
        event = orjson.loads(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            context = event.setdefault("context", {})
            if roll < 0.25:
                event["sentAt"] = rng.choice(stamps) if rng.random() < 0.4 else _shift(event.get("timestamp"), rng.randint(-5_000, 200_000_000))
                if rng.random() < 0.2:
                    event[rng.choice(["timestamp", "originalTimestamp"])] = rng.choice(stamps)
            elif roll < 0.35:
                event.pop("timestamp", None)
                if rng.random() < 0.5:
                    event["originalTimestamp"] = rng.choice(stamps)
            elif roll < 0.5:
                target = event.setdefault("traits", {}) if rng.random() < 0.5 else context.setdefault("traits", {})
                target[rng.choice(["email", "phone", "name"])] = rng.choice(emails + phones)
            elif roll < 0.6:
                ids = context.setdefault("externalIds", [])
                ids.append({"id": rng.choice(["X1", 42, "", " pad ", "a\x01b", "Person.1@Example.com", "13812345678"]), "type": rng.choice(ext_types)})
            elif roll < 0.7:
                for key in ("userId", "anonymousId"):
                    event.pop(key, None)
                context.pop("externalIds", None)
                context.pop("device", None)
            elif roll < 0.8:
                props = event.setdefault("properties", {})
                key, value = rng.choice([("currency", "usd"), ("currency", "EURO"), ("revenue", "12"), ("total", 5), ("order_id", 12),
                                         ("store_id", ""), ("region", None), ("category", 3), ("products", [{"product_id": 1, "price": 2}]),
                                         ("products", [{"sku": "s"}, {"product_id": "a\x01b"}]), ("products", [{"quantity": 2.5}, {"price": "1"}])])
                props[key] = value
            elif roll < 0.9:
                key, value = rng.choice([("channel", "fax"), ("channel", "pos"), ("messageId", "x" * 101), ("type", "alias"),
                                         ("type", "identify"), ("previousId", "anon-1"), ("event", ""), ("name", "Home"),
                                         ("version", 2), ("integrations", []), ("userId", 12.5)])
                event[key] = value
            else:
                context[rng.choice(["store", "device", "location", "consent"])] = rng.choice(
                    [{"id": "s-1", "region": "hubei"}, {"id": 3}, {"region": "x" * 101}, {"a": True}, [], {"id": ""}])
        out.append(orjson.dumps(event))
    return out


def _shift(stamp: Any, delta_ms: int) -> str:
    """``stamp`` moved by ``delta_ms``, written with milliseconds and 'Z' (as clients write it)."""
    from datetime import datetime, timedelta  # only for building edge cases
    try:
        dt = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        dt = datetime.fromisoformat("2026-11-30T21:04:51.910Z")
    return (dt + timedelta(milliseconds=delta_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome_line(raw: bytes | None, normalizer: Normalizer, i: int) -> bytes:
    """What the stage would emit for one record: the touchpoint's bytes, or the rejection."""
    event = decode(raw, MAX_BYTES)
    if isinstance(event, Rejected):
        return f"REJ {event.reason.value} {event.stage} {event.message!r}".encode()
    try:
        tp = normalizer.normalize(event, NOW_MS)
    except Exception as exc:  # the stage dead-letters these as processing errors
        return f"EXC {type(exc).__name__}: {exc}".encode()
    if isinstance(tp, Rejected):
        return f"REJ {tp.reason.value} {tp.stage} {tp.message!r}".encode()
    tp.profile_id, tp.source = f"p-{i}", f"touchpoints/0/{i}"
    return tp.to_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="workload events per pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--edge", type=int, default=5_000, help="edge-case records in the dump")
    parser.add_argument("--dump", help="write every record's outcome to this file")
    args = parser.parse_args()

    records = make_records(args.n)
    normalizer = make_normalizer()
    events = [decode(raw, MAX_BYTES) for raw in records]
    assert all(isinstance(e, dict) for e in events), "the workload has no malformed records"
    touchpoints = [normalizer.normalize(e, NOW_MS) for e in events]  # type: ignore[arg-type]
    for i, tp in enumerate(touchpoints):
        assert isinstance(tp, Touchpoint)
        tp.profile_id, tp.source = f"p-{i % 997}", f"touchpoints/{i % 4}/{i}"

    def run_decode() -> None:
        for raw in records:
            decode(raw, MAX_BYTES)

    def run_decode_reference() -> None:
        for raw in records:
            decode_reference(raw, MAX_BYTES)

    def run_normalize() -> None:
        normalize = normalizer.normalize
        for event in events:
            normalize(event, NOW_MS)  # type: ignore[arg-type]

    def run_normalize_cold() -> None:
        normalize = make_normalizer().normalize  # a new Normalizer: nothing memoised yet
        for event in events:
            normalize(event, NOW_MS)  # type: ignore[arg-type]

    def run_to_bytes() -> None:
        for tp in touchpoints:
            tp.to_bytes()  # type: ignore[union-attr]

    def run_all() -> None:
        normalize = normalizer.normalize
        for raw in records:
            normalize(decode(raw, MAX_BYTES), NOW_MS).to_bytes()  # type: ignore[arg-type,union-attr]

    n = len(records)
    steps = {"decode": run_decode, "decode (fastjsonschema only)": run_decode_reference, "normalize": run_normalize, "normalize (new Normalizer)": run_normalize_cold,
             "to_bytes": run_to_bytes, "total": run_all}
    for name, step in steps.items():
        print(f"{name:<29} {best_us(step, n, args.repeats):7.2f} us/event")

    if args.dump:
        fixed = fixed_records(args.n)
        lines = [outcome_line(raw, normalizer, i) for i, raw in enumerate(fixed + edge_records(fixed[:500], args.edge))]
        with open(args.dump, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        rejected = sum(line.startswith(b"REJ") for line in lines)
        print(f"dump: {len(lines)} records ({rejected} rejected) -> {args.dump}")


if __name__ == "__main__":
    main()
