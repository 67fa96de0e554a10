import orjson

from streams.events.model import Touchpoint
from streams.ingest.decode import decode
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from touchpoint_tools.simulate.population import Population, crisis

START = 1_767_225_600_000


def test_same_seed_same_traffic():
    a = [orjson.dumps(e) for e in Population(50, seed=3).events(300, START, 1000)]
    b = [orjson.dumps(e) for e in Population(50, seed=3).events(300, START, 1000)]
    assert a == b and len(a) == 300


def test_every_simulated_event_is_valid_and_spans_channels():
    norm = Normalizer(PiiHasher("k"))
    channels = set()
    for event in Population(100, seed=1).events(2000, START, 500, crisis(START)):
        decoded = decode(orjson.dumps(event), 32768)
        assert isinstance(decoded, dict), decoded
        tp = norm.normalize(decoded, START)
        assert isinstance(tp, Touchpoint), tp
        channels.add(tp.channel)
    assert channels == {"web", "app", "miniprogram", "ecommerce", "pos", "crm", "service"}


def test_crisis_scenario_multiplies_masks_in_hubei():
    hour = 3_600_000
    pop = Population(400, seed=5)
    scenario = crisis(START)
    assert scenario.factor("masks", "hubei", START + 7 * hour) == 5.0
    assert scenario.factor("masks", "beijing", START + 7 * hour) == 1.0
    assert scenario.factor("travel", "beijing", START + 11 * hour) == 0.3
    events = list(pop.events(6000, START, 60_000, scenario))
    def share(lo, hi):
        sel = [e for e in events if lo <= Population_ts(e) < hi]
        masks = sum(1 for e in sel if (e.get("properties") or {}).get("category") == "masks" and e["context"]["location"]["region"] == "hubei")
        return masks / max(1, len(sel))
    assert share(START + 7 * hour, START + 30 * hour) > 2 * share(START, START + 6 * hour)


def Population_ts(event):
    from datetime import datetime
    return int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1000)


def test_events_carry_real_orders_refunds_and_interest_for_the_demand_measures():
    from collections import Counter

    from streams.demand.pending import OrderMemory, partial_counts

    norm = Normalizer(PiiHasher("k"))
    tps = [norm.normalize(decode(orjson.dumps(e), 32768), START) for e in Population(200, seed=2).events(6000, START, 2000)]
    names = Counter(t.event for t in tps if t.type == "track")
    assert names["Order Completed"] > 500 and names["Order Refunded"] > 10 and names["Products Searched"] > 100
    orders = [t for t in tps if t.event == "Order Completed"]
    assert all(t.order_id and t.revenue and t.currency == "CNY" and t.products for t in orders)
    assert all(p["quantity"] >= 1 for t in orders for p in t.products)
    repeated = len(orders) - len({t.order_id for t in orders})
    assert repeated > 5  # the same order reported again by a second system (new messageId)
    sums, skipped = partial_counts(tps, 86_400, orders=OrderMemory())
    assert skipped["repeated_order"] == repeated
    by_measure = Counter()
    for (key, measure, _), v in sums.items():
        if key.startswith("channel:"):
            by_measure[measure] += v
    assert by_measure["orders"] == len(orders) - repeated
    assert by_measure["units"] > by_measure["orders"] and by_measure["interest"] > by_measure["orders"]
    refunds = sum(t.revenue for t in tps if t.event == "Order Refunded")
    first = {}
    for t in orders:
        first.setdefault(t.order_id, t.revenue)
    assert abs(by_measure["revenue"] - (sum(first.values()) - refunds)) < 1.0


def test_crisis_has_two_surges_that_end_and_two_shifts_that_persist():
    hour = 3_600_000
    scenario = crisis(START)
    assert scenario.factor("sanitizer", "beijing", START + 43 * hour) == 4.0 and scenario.factor("sanitizer", "beijing", START + 44 * hour) == 1.0
    assert scenario.factor("masks", "hubei", START + 30 * hour) == 1.0
    assert scenario.factor("travel", "sichuan", START + 30 * 24 * hour) == 0.3
    assert scenario.factor("online_courses", "hubei", START + 30 * 24 * hour) == 2.5
