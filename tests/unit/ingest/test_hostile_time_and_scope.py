"""Issue 21: the event-time window (High 2) and messageId dedup per source (Medium 7).

Before the fix an event dated 2999 kept its time (and advanced the demand clock and a profile's
last_seen for good), and a throwaway event from one source suppressed another source's purchase
carrying the same messageId.
"""

import asyncio

import orjson

from streams.events.model import dedup_id
from streams.events.reasons import Reason, Rejected
from streams.ingest.eventtime import EventTimeWindow
from streams.observability.metrics import Metrics
from streams.profiles.profile import decode
from streams.profiles.stage import ProfileStage
from tests.unit.ingest.test_stage import NOW, make_stage, records

DAY_MS = 86_400_000


def event(mid, ts="2026-01-01T00:00:30Z", source=None, user="u1", name="Order Completed", **extra):
    e = {"type": "track", "messageId": mid, "event": name, "userId": user, "timestamp": ts, "channel": "app",
         "properties": {"region": "hubei", "products": [{"product_id": "p1", "category": "masks"}]}, **extra}
    if source is not None:
        e["sourceId"] = source
    return orjson.dumps(e)


def windowed_stage():
    stage, sink = make_stage()
    metrics = Metrics()
    stage.window = EventTimeWindow(300_000, 3650 * DAY_MS, metrics.event_time_corrected.labels("future"))
    return stage, sink, metrics


def test_a_far_future_event_is_applied_at_its_receive_time_and_counted():
    stage, sink, metrics = windowed_stage()
    asyncio.run(stage.process_batch(records([event("f1", ts="2999-01-01T00:00:00Z"), event("ok", ts="2026-01-01T00:04:00Z")])))
    times = {e["message_id"]: e["ts_ms"] for _, e in sink.events}
    assert times == {"f1": NOW, "ok": NOW + 240_000}  # 2999 -> received at NOW; 4 min ahead is inside the window
    assert metrics.event_time_corrected.labels("future")._value.get() == 1
    asyncio.run(stage.flush_demand())
    assert sink.counts and max(c["b"] for c in sink.counts) <= NOW  # no demand bucket from the future


def test_future_corrected_with_sent_at_first():
    """Segment's skew rule comes first: a client clock 10 years fast that sends sentAt is
    corrected exactly (5 s before it was received), not clamped."""
    stage, sink, _ = windowed_stage()
    raw = event("s1", ts="2036-01-01T00:00:00Z", sentAt="2036-01-01T00:00:05Z")
    asyncio.run(stage.process_batch(records([raw])))
    assert sink.events[0][1]["ts_ms"] == NOW - 5000


def test_an_ancient_event_is_dead_lettered_with_its_reason():
    stage, sink, _ = windowed_stage()
    asyncio.run(stage.process_batch(records([event("old", ts="1970-01-01T00:00:00Z"), event("ok")])))
    assert [e["message_id"] for _, e in sink.events] == ["ok"]
    (letter,) = sink.letters
    headers = dict(letter.headers)
    assert headers["tp.reason"] == Reason.EVENT_TIME_OUT_OF_WINDOW.value.encode()
    assert b"1970-01-01" in headers["tp.message"]


def test_window_rule_is_relative_to_the_receive_time():
    w = EventTimeWindow(max_future_ms=1000, max_past_ms=5000)
    from streams.events.model import Touchpoint
    tp = lambda ts: Touchpoint("m", "track", ts, 10_000, (("user_id", "u"),))  # noqa: E731
    assert w.apply(tp(11_000)).ts_ms == 11_000 and w.apply(tp(11_001)).ts_ms == 10_000
    assert w.apply(tp(5_000)).ts_ms == 5_000 and isinstance(w.apply(tp(4_999)), Rejected)


def test_the_same_message_id_from_two_sources_is_two_events():
    stage, sink = make_stage()
    throwaway = event("order-1", source="wk-aaaa", user="tester", name="Product Viewed")
    purchase = event("order-1", source="wk-bbbb", user="u1")
    asyncio.run(stage.process_batch(records([throwaway, purchase])))
    assert sorted((e["message_id"], e.get("scope")) for _, e in sink.events) == [("order-1", "wk-aaaa"), ("order-1", "wk-bbbb")]
    # a replay from the same source is still a duplicate (invariant 2), in a later batch too
    asyncio.run(stage.process_batch(records([purchase], start=10)))
    assert len(sink.events) == 2 and stage.metrics.duplicates._value.get() == 1


def test_unscoped_events_keep_the_old_dedup_key():
    assert dedup_id("m1", None) == "m1" and dedup_id("m1", "crm") == "crm/m1"


def test_profile_dedup_window_is_per_source_too():
    def ev(offset, scope):
        return orjson.dumps({"message_id": "order-1", "scope": scope, "type": "track", "ts_ms": NOW, "received_at_ms": NOW,
                             "identifiers": ["user_id:u1"], "profile_id": "A", "source": f"ns.touchpoints/0/{offset}"})

    stage = ProfileStage()
    first = stage.decide("A", None, ev(1, "wk-aaaa"), offset=1)
    second = stage.decide("A", first.value, ev(2, "wk-bbbb"), offset=2)
    assert second.outcome == "applied" and decode(second.value)["n"] == 2
    # the same event of the same source, re-emitted under another origin (past the watermark), is caught
    other_origin = orjson.loads(ev(3, "wk-bbbb"))
    other_origin["profile_id"] = "B"
    assert stage.decide("A", second.value, orjson.dumps(other_origin), offset=3).outcome == "duplicate"
