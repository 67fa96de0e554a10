"""Computed traits: fold/merge exactness (any order, any merge tree), windows that slide, bounds."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.activation import traits as TR
from streams.activation.definitions import load, parse
from tests.unit.activation import oracle

DEFS = load("docs/activation.example.toml")
DAY = TR.DAY_MS
NOW = 20_600 * DAY + 13 * 3_600_000  # mid-afternoon UTC of a fixed day
CATS = ("masks", "sanitizer", "thermometers", "tea")


def make_event(i: int, rng: random.Random, now: int = NOW) -> dict:
    ts = now - rng.randint(0, 120) * DAY - rng.randint(0, DAY - 1)
    cat = rng.choice(CATS)
    e = {"message_id": f"m{i}", "type": "track", "ts_ms": ts, "identifiers": ["user_id:u"],
         "channel": rng.choice(("app", "web", "pos", "miniprogram")), "region": rng.choice(("hubei", "beijing")),
         "category": cat}
    if rng.random() < 0.5:
        q = rng.randint(1, 3)
        e.update(event="Order Completed", order_id=f"o{i}", revenue=round(rng.uniform(5, 400), 2),
                 currency=rng.choice(("CNY", "CNY", "USD")), products=[{"product_id": f"{cat}-{rng.randint(1, 5)}", "category": cat, "quantity": q}])
    else:
        e.update(event=rng.choice(("Product Viewed", "Product Added")))
    return e


def fold_all(events):
    ax = {}
    for e in events:
        TR.fold(ax, e, DEFS)
    return ax


def merge_tree(groups, rng):
    states = [fold_all(g) for g in groups]
    while len(states) > 1:
        i, j = sorted(rng.sample(range(len(states)), 2))
        b = states.pop(j)
        a = states.pop(i)
        states.append(TR.merge(a, b, DEFS))
    return states[0] if states else {}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 60), st.integers(1, 6))
def test_any_order_and_any_merge_tree_give_the_same_traits(seed, n, parts):
    rng = random.Random(seed)
    events = [make_event(i, rng) for i in range(n)]
    reference = fold_all(events)
    shuffled = events[:]
    rng.shuffle(shuffled)
    assert fold_all(shuffled) == reference
    groups = [[] for _ in range(parts)]
    for e in shuffled:
        groups[rng.randrange(parts)].append(e)
    merged = merge_tree(groups, rng)
    assert merged == reference
    for now in (NOW, NOW + 3 * DAY, NOW + 45 * DAY):
        assert TR.evaluate(merged, DEFS, now) == TR.evaluate(reference, DEFS, now) == oracle.traits(DEFS, events, now)


def test_a_window_slides_without_events_and_due_says_when():
    rng = random.Random(7)
    e = make_event(1, rng)
    e.update(ts_ms=NOW - 2 * DAY, event="Order Completed", order_id="o1", revenue=120.0, currency="CNY", category="masks",
             products=[{"product_id": "masks-1", "category": "masks", "quantity": 2}])
    ax = TR.fold({}, e, DEFS)
    v = TR.evaluate(ax, DEFS, NOW)
    assert v["orders_90d"] == 1 and v["mask_units_30d"] == 2 and v["revenue_90d"] == 120.0 and v["days_since_order"] == 2
    due = TR.due(ax, DEFS, NOW)
    assert due == (NOW // DAY + 1) * DAY  # days_since grows at the next UTC midnight
    later = TR.evaluate(ax, DEFS, NOW + 29 * DAY)
    assert later["mask_units_30d"] == 0 and later["orders_90d"] == 1 and later["days_since_order"] == 31
    assert TR.evaluate(ax, DEFS, NOW + 88 * DAY)["orders_90d"] == 0


def test_windowed_state_stays_bounded_by_the_window():
    rng = random.Random(3)
    ax = {}
    for i in range(3000):
        e = make_event(i, rng, now=NOW + i * DAY // 10)  # 300 days of traffic
        TR.fold(ax, e, DEFS)
    for name, days in ax["w"].items():
        assert len(days) <= DEFS.trait(name).window_days + 1, name
    for name, days in ax["d"].items():
        assert len(days) <= DEFS.trait(name).window_days + 1


def test_late_event_older_than_every_window_is_not_kept():
    defs = parse('[traits.o7]\nkind = "count"\nof = "events"\nwindow_days = 7\n')
    ax = TR.fold({}, {"ts_ms": NOW, "type": "track"}, defs)
    TR.fold(ax, {"ts_ms": NOW - 30 * DAY, "type": "track"}, defs)
    assert list(ax["w"]["o7"]) == [str(NOW // DAY)]
    assert TR.evaluate(ax, defs, NOW)["o7"] == 1


def test_rfm_scores_follow_thresholds():
    t = DEFS.trait("recency_score")
    assert [TR.score(d, t) for d in (None, 0, 7, 8, 30, 61)] == [0, 5, 5, 4, 3, 1]
    f = DEFS.trait("frequency_score")
    assert [TR.score(n, f) for n in (0, 1, 2, 5, 8, 100)] == [1, 1, 2, 4, 5, 5]
