"""Split in the profiles stage and the refold of both sides (streams/profiles/refold.py)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.profiles.profile import decode
from streams.profiles.refold import events_to_refold, refold_sides
from streams.profiles.stage import ProfileStage

T0 = 1_767_225_600_000
RANK = {"user_id": 0, "email": 3, "device_id": 8, "anonymous_id": 9}


def ev(i: int, origin: str, *ids: str, part: int = 0) -> dict[str, Any]:
    return {"message_id": f"m{i}", "type": "track", "ts_ms": T0 + i * 1000, "received_at_ms": T0, "identifiers": list(ids),
            "channel": "web", "event": "Product Viewed", "profile_id": origin, "source": f"ns.touchpoints/{part}/{i}"}


def rank(f: str) -> int:
    return RANK[f.partition(":")[0]]


# A family tablet merged p2 (a2, e2) into p1 (u1, tablet); p2's later event was forwarded to p1.
ITEMS = [
    ("p1", 0, 10, ev(1, "p1", "user_id:u1", "device_id:tablet")),
    ("p2", 1, 10, ev(2, "p2", "email:e2", "anonymous_id:a2", part=1)),
    ("p1", 0, 11, ev(3, "p1", "anonymous_id:a2", "device_id:tablet")),           # the merging event (tablet ranks first)
    ("p2", 1, 11, {"control": "merge", "from": "p2", "into": "p1"}),
    ("p2", 1, 12, ev(4, "p2", "email:e2", part=1)),                              # forwarded: its copy below
    ("p1", 0, 12, {**ev(4, "p2", "email:e2", part=1), "fwd": 1}),
    ("p1", 0, 13, ev(5, "p1", "user_id:u1")),
    ("p1", 0, 14, {"control": "split", "profile_id": "p1", "into": "p3", "moved": ["anonymous_id:a2", "email:e2"]}),
    ("p1", 0, 15, ev(6, "p1", "user_id:u1")),                                    # after the split: live, not refolded
    ("p9", 0, 16, ev(7, "p9", "user_id:other")),
]


def test_the_events_before_the_split_are_taken_once_each() -> None:
    got = events_to_refold(ITEMS, {"p1", "p2"}, (0, 14))
    # p2's m4 once (its copy keyed p1, taken before the split); p2's own events up to its merge
    assert [e["message_id"] for e in got] == ["m1", "m2", "m3", "m4", "m5"]


def test_each_event_goes_to_the_side_of_its_identifiers() -> None:
    events = events_to_refold(ITEMS, {"p1", "p2"}, (0, 14))
    a, b, counts = refold_sides(events, {"anonymous_id:a2", "email:e2"}, {"user_id:u1", "device_id:tablet"}, rank)
    assert counts == {"kept": 3, "moved": 2, "duplicates": 0}
    assert (a["n"], b["n"]) == (3, 2)
    assert sorted(a["ids"]) == ["device_id:tablet", "user_id:u1"]  # the merging event lost a2 (the other side's)
    assert sorted(b["ids"]) == ["anonymous_id:a2", "email:e2"]
    assert "po" not in a and "po" not in b


def test_the_stage_resets_forwards_and_folds_the_refold_once() -> None:
    stage = ProfileStage()
    value = None
    for n in (0, 2, 5, 6):  # what reached p1 before the split (p2's m2 came with its absorb, left out here)
        value = stage.decide("p1", value, orjson.dumps(ITEMS[n][3]), n).value
    assert decode(value)["n"] == 4  # m1, m3, m4 (forwarded), m5
    d = stage.decide("p1", value, orjson.dumps(ITEMS[7][3]), 100)
    assert d.outcome == "split" and decode(d.value)["n"] == 0 and decode(d.value)["wm"] == decode(value)["wm"]
    value = d.value
    # an in-flight event of the moved side goes on to p3; one of the kept side is folded live
    fwd = stage.decide("p1", value, orjson.dumps(ev(8, "p1", "email:e2")), 101)
    assert fwd.outcome == "forwarded" and fwd.sends[0].key == "p3"
    d = stage.decide("p1", value, orjson.dumps(ev(6, "p1", "user_id:u1")), 102)
    assert d.outcome == "applied"
    value = d.value
    # a re-emitted old event is still a duplicate (the dedup memory was kept)
    assert stage.decide("p1", value, orjson.dumps(ev(5, "p1", "user_id:u1")), 103).outcome == "duplicate"
    a, _, _ = refold_sides(events_to_refold(ITEMS, {"p1", "p2"}, (0, 14)), {"anonymous_id:a2", "email:e2"},
                           {"user_id:u1", "device_id:tablet"}, rank)
    refold = orjson.dumps({"control": "refold", "profile_id": "p1", "split": "p3", "state": a})
    d = stage.decide("p1", value, refold, 104)
    assert d.outcome == "refolded" and decode(d.value)["n"] == 4  # 3 refolded + 1 live
    assert stage.decide("p1", d.value, refold, 104).outcome == "replayed"
    assert stage.decide("p1", d.value, refold, 106).outcome == "refold_duplicate"
    # the same split control again changes nothing
    assert stage.decide("p1", d.value, orjson.dumps(ITEMS[7][3]), 107).value is None


def test_a_second_split_leaves_out_what_the_first_moved() -> None:
    items = [*ITEMS[:8], ("p1", 0, 20, {"control": "split", "profile_id": "p1", "into": "p4", "moved": ["device_id:tablet"]})]
    got = events_to_refold(items, {"p1", "p2"}, (0, 20))
    assert sorted(e["message_id"] for e in got) == ["m1", "m3", "m5"]  # m2, m4 went to p3 with the first split
