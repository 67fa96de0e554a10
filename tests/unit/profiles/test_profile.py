"""The pure profile value: folding events, merging profiles, last-write-wins, bounds, rendering."""

import copy
import random

import orjson

from streams.profiles.profile import DEFAULT_LIMITS, Limits, encode, fold, merge, new_profile, render, summary

T0 = 1_767_225_600_000


def ev(i, ts=None, **extra):
    base = {"message_id": f"m{i}", "type": "track", "ts_ms": T0 + (i if ts is None else ts) * 1000, "received_at_ms": T0,
            "identifiers": ["user_id:u1"], "channel": "web", "event": "Product Viewed", "category": "masks"}
    base.update(extra)
    return base


def folded(events, limits=DEFAULT_LIMITS):
    state = new_profile()
    for e in events:
        fold(state, e, limits)
    return state


def test_fold_counts_channels_types_first_last_seen():
    s = folded([ev(1), ev(2, channel="app", type="page", event="masks listing"), ev(0, channel="app")])
    assert s["n"] == 3
    assert s["ch"] == {"web": 1, "app": 2}
    assert s["ty"] == {"track": 2, "page": 1}
    assert (s["fs"], s["ls"]) == (T0, T0 + 2000)
    out = render("p1", s)
    assert out["first_seen"] == "2026-01-01T00:00:00.000Z" and out["last_seen"] == "2026-01-01T00:00:02.000Z"
    assert out["channels"] == {"app": 2, "web": 1} and out["event_count"] == 3


def test_traits_are_event_time_last_write_wins():
    newer = ev(10, type="identify", traits={"region": "beijing", "tier": "gold"})
    older = ev(5, type="identify", traits={"region": "shanghai", "age": 30})
    s = folded([newer, older])  # the older event arrives late
    assert render("p", s)["traits"] == {"region": "beijing", "tier": "gold", "age": 30}
    assert folded([older, newer])["tr"] == s["tr"]


def test_equal_event_times_resolve_the_same_whatever_the_order():
    a, b = ev(1, traits={"x": "a"}), ev(1, traits={"x": "b"})
    assert folded([a, b])["tr"] == folded([b, a])["tr"] == {"x": ["b", T0 + 1000]}


def test_orders_revenue_in_exact_minor_units_and_funnel():
    order = dict(event="Order Completed", order_id="o1", revenue=0.1, currency="CNY", identifiers=["user_id:u1", "order_id:o1"])
    s = folded([ev(1), ev(2, event="Product Added"), ev(3, **order)])
    assert s["oc"] == 1 and s["rv"] == {"CNY": 10}
    assert render("p", s)["funnel_stage"] == "purchased"
    assert "order_id:o1" not in s["ids"]
    s = folded([ev(i, **{**order, "order_id": f"o{i}"}) for i in range(10)])
    orders = render("p", s)["orders"]
    assert (orders["count"], orders["revenue"]) == (10, {"CNY": 1.0})  # 10 x 0.1 exactly
    assert render("p", s)["funnel_stage"] == "repeat_buyer"
    assert render("p", folded([ev(1, event="Product Added")]))["funnel_stage"] == "carted"
    assert render("p", folded([ev(1, event="Whatever")]))["funnel_stage"] == "visited"


def test_consent_flags_last_write_wins():
    s = folded([ev(2, consent={"categoryPreferences": {"marketing": False}}), ev(1, consent={"categoryPreferences": {"marketing": True, "ads": True}})])
    assert render("p", s)["consent"] == {"ads": True, "marketing": False}


def test_identifiers_first_and_last_seen():
    s = folded([ev(5, identifiers=["user_id:u1", "email:abc"]), ev(1, identifiers=["user_id:u1"])])
    ids = {i["type"] + ":" + i["value"]: i for i in render("p", s)["identifiers"]}
    assert ids["user_id:u1"]["first_seen"].endswith("00:01.000Z") and ids["user_id:u1"]["last_seen"].endswith("00:05.000Z")
    assert ids["email:abc"]["first_seen"] == ids["email:abc"]["last_seen"]


def test_bounds_hold_and_timeline_keeps_the_latest_by_event_time():
    limits = Limits(timeline=5, identifiers=3, traits=4, categories=3, trait_bytes=50)
    events = [ev(i, identifiers=[f"device_id:d{i}"], traits={f"t{i}": i, "big": "x" * 100}, category=f"c{i % 7}") for i in range(40)]
    random.Random(1).shuffle(events)
    s = folded(events, limits)
    assert len(s["tl"]) == 5 and [e[0] for e in s["tl"]] == [T0 + i * 1000 for i in range(35, 40)]
    assert len(s["ids"]) == 3 and set(s["ids"]) == {"device_id:d37", "device_id:d38", "device_id:d39"}
    assert len(s["tr"]) == 4 and "big" not in s["tr"]
    assert len(s["cat"]) <= 3
    assert s["n"] == 40
    tl = render("p", s)["timeline"]
    assert tl[0]["time"] > tl[-1]["time"]  # newest first


def test_merge_equals_folding_everything_into_one():
    rng = random.Random(7)
    events = [ev(i, ts=rng.randint(0, 500), channel=rng.choice(["web", "app", "pos"]), traits={"k": rng.randint(0, 9)},
                 identifiers=[f"user_id:u{rng.randint(0, 3)}"], event=rng.choice(["Order Completed", "Product Viewed"]),
                 revenue=rng.choice([None, 12.34]), currency="CNY") for i in range(60)]
    whole = folded(events)
    a, b = folded(events[:25]), folded(events[25:])
    merged = merge(copy.deepcopy(a), b)
    assert render("x", merged) == render("x", whole)
    assert render("x", merge(copy.deepcopy(b), a)) == render("x", whole)


def test_summary_is_short_and_readable():
    order = ev(1, event="Order Completed", revenue=25.0, currency="CNY", products=[{"category": "masks", "quantity": 2}])
    assert summary(order) == "Order Completed: 2 x masks, 25.00 CNY"
    assert summary(ev(1, type="page", event="masks listing")) == "page masks listing"
    assert len(summary(ev(1, event="x" * 500))) == 80


def test_typical_profile_is_small():
    events = [ev(i, identifiers=["user_id:u000001", "anonymous_id:3f2b8a9e-1c4d-4e5f-8a9b-0c1d2e3f4a5b", "email:" + "a" * 32],
                 event="Product Viewed", products=[{"product_id": "masks-001", "category": "masks", "price": 3.5, "quantity": 1}])
              for i in range(15)]
    assert len(encode(folded(events))) < 2048
    assert len(orjson.dumps(render("p1", folded(events)))) < 6000


def test_new_categories_enter_in_event_order_whatever_the_hash_seed():
    state = new_profile()
    cats = ["masks", "toys", "food", "books", "sanitizer", "travel"]
    fold(state, {"ts_ms": 1, "type": "track", "event": "Order Completed", "products": [{"category": c} for c in cats]})
    assert list(state["cat"]) == cats  # a set would order them by string hash (PYTHONHASHSEED)
