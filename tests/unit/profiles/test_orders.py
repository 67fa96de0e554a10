"""Orders per the e-commerce spec (issue 17, item 7): one per order id, only completed orders,
refunds and cancellations apart, exact under any fold order and any merge."""

import copy

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.profiles.profile import DEFAULT_LIMITS, Limits, decode, encode, fold, merge, new_profile, render
from streams.profiles.stage import ProfileStage

T0 = 1_767_225_600_000


def ev(i, name, order_id=None, revenue=None, currency="CNY", channel="ecommerce", ts=None):
    e = {"message_id": f"m{i}", "type": "track", "ts_ms": T0 + (i if ts is None else ts) * 1000, "received_at_ms": T0,
         "identifiers": ["user_id:u1"], "channel": channel, "event": name}
    if order_id is not None:
        e["order_id"] = order_id
        e["identifiers"] = ["user_id:u1", f"order_id:{order_id}"]
    if revenue is not None:
        e.update(revenue=revenue, currency=currency)
    return e


def folded(events, limits=DEFAULT_LIMITS):
    state = new_profile()
    for e in events:
        fold(state, e, limits)
    return state


def orders(events, limits=DEFAULT_LIMITS):
    return render("p", folded(events, limits))["orders"]


# -- the defects of issue 17 (each fails on the fold before this change) ---------------------------

def test_order_refunded_adds_no_order_and_no_revenue():
    out = orders([ev(1, "Order Refunded", "o1", 25.0)])
    assert out["count"] == 0 and out["revenue"] == {}  # was: 1 order, 25.00 CNY revenue
    assert out["refunds"] == {"count": 1, "amount": {"CNY": 25.0}} and out["unmatched"] == 1


def test_one_order_from_two_sources_and_a_checkout_is_one_order():
    events = [ev(1, "Checkout Started", "o1", 25.0), ev(2, "Order Completed", "o1", 25.0),
              ev(3, "Order Completed", "o1", 25.0, channel="crm"), ev(4, "Order Completed", "o1", 25.0, channel="pos")]
    out = orders(events)
    assert out["count"] == 1 and out["revenue"] == {"CNY": 25.0}  # was: 4 orders, 100.00 CNY
    assert render("p", folded(events))["funnel_stage"] == "purchased"  # was: repeat_buyer


def test_refunds_and_cancellations_are_counted_apart_and_reduce_revenue():
    events = [ev(1, "Order Completed", "o1", 100.0), ev(2, "Order Completed", "o2", 40.0), ev(3, "Order Completed", "o3", 10.0),
              ev(4, "Order Refunded", "o1", 30.0),     # partial refund
              ev(5, "Order Refunded", "o1", 30.0, channel="crm"),  # the same refund from another source
              ev(6, "Order Cancelled", "o2"),
              ev(7, "Order Refunded", "o9", 5.0)]      # an order this profile never saw
    out = orders(events)
    assert out["count"] == 2                          # o1, o3 (o2 cancelled)
    assert out["gross"] == {"CNY": 150.0}
    assert out["revenue"] == {"CNY": 80.0}            # 150 - 30 refunded - 40 cancelled
    assert out["refunds"] == {"count": 2, "amount": {"CNY": 35.0}}  # o1 (30) and the unmatched o9 (5)
    assert (out["cancelled"], out["unmatched"]) == (1, 1)


def test_refund_without_amount_is_full_and_late_completion_matches_it():
    events = [ev(1, "Order Refunded", "o1"), ev(2, "Order Completed", "o1", 12.5, ts=0)]
    for seq in (events, events[::-1]):
        out = orders(seq)
        assert (out["count"], out["revenue"], out["unmatched"]) == (1, {"CNY": 0.0}, 0)
        assert out["refunds"] == {"count": 1, "amount": {"CNY": 12.5}}
    assert render("p", folded(events))["funnel_stage"] == "purchased"  # a refunded order was still bought


def test_only_completed_events_count():
    names = ["Checkout Started", "Order Updated", "Product Added", "Payment Info Entered", "Checkout Step Completed"]
    out = orders([ev(i, n, f"o{i}", 9.0) for i, n in enumerate(names)])
    assert out["count"] == 0 and out["revenue"] == {}
    assert orders([ev(1, "Completed Order", "o1", 9.0)])["count"] == 1  # spec v1 name
    assert orders([ev(1, "Order Completed"), ev(2, "Order Completed")])["count"] == 2  # no id: each event its own order


def test_cancelling_the_only_order_leaves_no_purchase():
    s = folded([ev(1, "Order Completed", "o1", 9.0), ev(2, "Order Cancelled", "o1")])
    assert render("p", s)["funnel_stage"] != "purchased" and render("p", s)["orders"]["cancelled"] == 1


def test_currencies_stay_apart_and_the_earliest_report_of_an_order_wins():
    events = [ev(2, "Order Completed", "o1", 25.0, "CNY", channel="crm"), ev(1, "Order Completed", "o1", 3.5, "USD"),
              ev(3, "Order Completed", "o2", 7.0, "CNY")]
    for seq in (events, events[::-1]):
        out = orders(seq)
        assert out["count"] == 2 and out["revenue"] == {"CNY": 7.0, "USD": 3.5}


def test_past_the_bound_the_oldest_orders_retire_and_stay_counted():
    limits = Limits(orders=3)
    events = [ev(i, "Order Completed", f"o{i}", 1.0) for i in range(10)]
    s = folded(events[::-1], limits)
    assert sorted(s["od"]["o"]) == ["o7", "o8", "o9"]
    assert render("p", s)["orders"]["count"] == 10 and render("p", s)["orders"]["revenue"] == {"CNY": 10.0}
    # the stated limit: a retired order id reported again counts again
    assert render("p", fold(s, ev(20, "Order Completed", "o0", 1.0, ts=0), limits))["orders"]["count"] == 11


# -- merge exactness ------------------------------------------------------------------------------

NAMES = st.sampled_from(["Order Completed", "Order Completed", "Completed Order", "Order Refunded", "Order Cancelled",
                         "Checkout Started", "Order Updated", "Product Viewed"])
EVENT = st.tuples(NAMES, st.sampled_from([None, "o1", "o2", "o3", "o4"]), st.sampled_from([None, 0.1, 5.0, 25.5, 199.99]),
                  st.sampled_from(["CNY", "USD", None]), st.integers(0, 5), st.sampled_from(["ecommerce", "crm", "pos"]))


def _events(specs):
    out = []
    for i, (name, oid, revenue, cur, ts, channel) in enumerate(specs):
        e = ev(i, name, oid, revenue, cur, channel, ts=ts)
        if revenue is not None and cur is None:
            del e["currency"]
        out.append(e)
    return out


def _oracle(events):
    """Counted orders and unmatched ids straight from the spec rules, without the fold."""
    done = {e["order_id"] for e in events if e["event"] in ("Order Completed", "Completed Order") and "order_id" in e}
    cancelled = {e.get("order_id") for e in events if e["event"] == "Order Cancelled"}
    undone = {e.get("order_id") for e in events if e["event"] in ("Order Refunded", "Order Cancelled")}
    no_id = [e for e in events if "order_id" not in e and e["event"] in ("Order Refunded", "Order Cancelled", "Order Completed",
                                                                       "Completed Order")]
    unmatched = len(undone - done - {None}) + sum(1 for e in no_id if e["event"] in ("Order Refunded", "Order Cancelled"))
    return len(done - cancelled) + sum(1 for e in no_id if "Completed" in e["event"]), unmatched


def _view(state):
    return render("x", state)["orders"], render("x", state)["funnel_stage"], state["od"]["o"] if "od" in state else {}


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=24), st.randoms(use_true_random=False), st.integers(1, 4))
def test_merge_equals_folding_every_event_into_one_profile(specs, rng, parts):
    events = _events(specs)
    whole = folded(events)
    out = render("x", whole)["orders"]
    assert (out["count"], out["unmatched"]) == _oracle(events)
    shuffled = events[:]
    rng.shuffle(shuffled)
    assert _view(folded(shuffled)) == _view(whole)
    groups = [[] for _ in range(parts)]
    for e in shuffled:
        groups[rng.randrange(parts)].append(e)
    profiles = [folded(g) for g in groups]
    rng.shuffle(profiles)
    merged = profiles[0]
    for other in profiles[1:]:  # through bytes, as an absorb travels
        merged = merge(merged, decode(encode(other)))
    assert _view(merged) == _view(whole)


@settings(max_examples=100, deadline=None)
@given(st.lists(EVENT, max_size=16), st.randoms(use_true_random=False))
def test_merge_is_symmetric(specs, rng):
    events = _events(specs)
    cut = rng.randrange(len(events) + 1)
    a, b = folded(events[:cut]), folded(events[cut:])
    assert _view(merge(copy.deepcopy(a), copy.deepcopy(b))) == _view(merge(b, a))


# -- values written before this change ------------------------------------------------------------

def _old_value():
    """A value exactly as the fold before this change stored it: 2 orders counted (one was a refund)."""
    state = new_profile()
    for e in [ev(1, "Product Viewed"), ev(2, "Order Completed", "o1", 25.0)]:
        fold(state, e)
    state.pop("od")
    state["oc"], state["rv"] = 2, {"CNY": 5000}
    state["po"] = 7
    return encode(state)


def test_values_of_the_old_layout_load_render_and_keep_folding():
    stage = ProfileStage()
    old = _old_value()
    assert b'"od"' not in old
    out = render("p", decode(old))["orders"]
    assert out == {"count": 2, "revenue": {"CNY": 50.0}, "gross": {"CNY": 50.0}, "refunds": {"count": 0, "amount": {}},
                   "cancelled": 0, "unmatched": 0}
    d = stage.decide("p", old, ev(10, "Order Completed", "o2", 10.0) | {"profile_id": "p"}, 8)
    assert d.outcome == "applied"
    out = render("p", decode(d.value))["orders"]
    assert out["count"] == 3 and out["revenue"] == {"CNY": 60.0} and out["gross"] == {"CNY": 60.0}
    d = stage.decide("p", d.value, ev(11, "Order Refunded", "o2", 10.0) | {"profile_id": "p"}, 9)
    out = render("p", decode(d.value))["orders"]
    assert out["count"] == 3 and out["revenue"] == {"CNY": 50.0} and out["refunds"]["count"] == 1


def test_an_old_value_absorbed_into_a_new_one_adds_its_legacy_totals():
    new = folded([ev(1, "Order Completed", "o5", 1.0)])
    merged = merge(new, decode(_old_value()))
    out = render("p", merged)["orders"]
    assert out["count"] == 3 and out["revenue"] == {"CNY": 51.0} and out["gross"] == {"CNY": 51.0}
    merged = merge(decode(_old_value()), folded([ev(1, "Order Completed", "o5", 1.0)]))
    assert render("p", merged)["orders"] == out


def test_profiles_without_orders_keep_their_bytes():
    s = folded([ev(1, "Product Viewed"), ev(2, "Checkout Started", "o1", 3.0)])
    assert "od" not in s and s["oc"] == 0 and s["rv"] == {}
    assert orjson.loads(encode(merge(copy.deepcopy(s), s))).keys() == s.keys()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from([0.1, 5.0, 25.5])), max_size=20, unique_by=lambda t: t[0]),
       st.randoms(use_true_random=False))
def test_past_the_bound_totals_do_not_depend_on_order_or_merges_when_each_id_comes_once(specs, rng):
    limits = Limits(orders=3)
    events = [ev(i, "Order Completed", f"o{oid}", revenue, ts=oid) for i, (oid, revenue) in enumerate(specs)]
    whole = folded(events, limits)
    rng.shuffle(events)
    cut = rng.randrange(len(events) + 1)
    merged = merge(folded(events[:cut], limits), folded(events[cut:], limits), limits)
    assert _view(merged) == _view(whole) and len(whole.get("od", {}).get("o", {})) <= 3
    assert render("p", whole)["orders"]["count"] == len(specs)


def test_an_absorb_through_the_stage_counts_a_shared_order_once():
    stage = ProfileStage()
    a = stage.decide("A", None, ev(1, "Order Completed", "o1", 25.0) | {"profile_id": "A", "source": "t/0/1"}, 1).value
    b = stage.decide("B", None, ev(2, "Order Completed", "o1", 25.0, channel="crm") | {"profile_id": "B", "source": "t/1/1"}, 2).value
    b = stage.decide("B", b, ev(3, "Checkout Started", "o1", 25.0) | {"profile_id": "B", "source": "t/1/2"}, 3).value
    merged = stage.decide("B", b, {"control": "merge", "from": "B", "into": "A", "message_id": "mm", "ts_ms": T0}, 4)
    (absorb,) = merged.sends
    out = render("A", decode(stage.decide("A", a, absorb.value, 5).value))["orders"]
    assert out["count"] == 1 and out["revenue"] == {"CNY": 25.0}  # was: 3 orders, 75.00 CNY


def test_orders_without_an_id_are_one_per_event_and_source():
    a, b = ev(1, "Order Completed", revenue=3.0), ev(1, "Order Completed", revenue=3.0) | {"scope": "wk-shop"}
    assert orders([a, b])["count"] == 2  # same messageId from two write keys: two events, two orders
