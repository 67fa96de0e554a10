"""The corroboration rule (streams/demand/corroboration.py): a units or revenue shift of a
category's key is published only while the same key's orders or interest, or its category, has an
alert open the same way."""

from __future__ import annotations

import math
import random

import orjson

from streams.demand.buckets import utc_ms
from streams.demand.corroboration import corroborators, parent_key
from streams.demand.lifecycle_config import OPEN
from streams.demand.pending import PendingCounts
from streams.demand.stage import DemandStage, StageConfig
from streams.events.model import Touchpoint

H = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
DAYS = 10
SURGE = range(DAYS * 24 + 10, DAYS * 24 + 22)  # 12 hours, from 10:00 on day 11


def _poisson(rng: random.Random, mu: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-mu)
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


def _run(measures: tuple[str, ...], parent_surges: bool, seed: int = 1,
         child: str = "category_region:e|beijing", others: bool = True) -> list[dict]:
    """Ten days of a category x region key and its category (orders ~8/h, units ~20/h, on one
    partition), then 12 hours of x3 units on the category x region key alone; ``parent_surges``:
    the category's orders triple in the same hours. The OPEN records of units on the key."""
    rng = random.Random(seed)
    stage = DemandStage(StageConfig(bucket_s=3600, lateness_s=0, timezone="UTC", measures=measures, pool_floor=0.0), {}, {})
    parent = "category:e"
    offset, opens = 0, []
    for h in range(DAYS * 24 + 30):
        surge = h in SURGE
        sums = {(child, "orders"): _poisson(rng, 8), (child, "units"): _poisson(rng, 60 if surge else 20),
                (parent, "orders"): _poisson(rng, 90 if surge and parent_surges else 30)}
        for (key, measure), n in sums.items():
            if measure not in measures or (not others and (key, measure) != (child, "units")):
                continue
            offset += 1
            msg = {"k": key, "m": measure, "b": T0 + h * H, "n": n, "c": [[0, n, offset]]}
            if key.startswith("product:"):
                msg["in"] = parent  # what ingest sends with a product's sums
            value = orjson.dumps(msg)
            opens += [a for a in stage.handle(0, value).alerts
                      if a["state"] == OPEN and a["key"] == child and a["measure"] == "units"]
    return opens


def test_a_units_surge_alone_is_not_published() -> None:
    # Orders watched and flat, the category flat: a few big baskets, silent.
    assert _run(("orders", "units"), parent_surges=False) == []
    # The very same traffic without a corroborator watched (units only): published, as before.
    alone = _run(("units",), parent_surges=False)
    assert len(alone) == 1 and alone[0]["direction"] == "surge"
    # Orders watched, but no corroborator has any state here (as when the category lives on
    # another worker's partition): published as before, not silenced by what cannot be seen.
    assert _run(("orders", "units"), parent_surges=False, others=False) == alone


def test_a_units_surge_the_category_carries_is_published() -> None:
    for child in ("category_region:e|beijing", "product:e-1"):
        opens = _run(("orders", "units"), parent_surges=True, child=child)
        assert len(opens) == 1 and opens[0]["direction"] == "surge", child
        assert T0 + SURGE[0] * H < utc_ms(opens[0]["bucket_end"]) <= T0 + (SURGE[-1] + 1) * H, child
    # The same product while its category is flat: silent.
    assert _run(("orders", "units"), parent_surges=False, child="product:e-1") == []


def test_which_series_corroborate() -> None:
    watched = ("orders", "units", "revenue", "interest")
    assert corroborators("product:p-1", "revenue", watched, "category:masks") == (
        "orders/product:p-1", "interest/product:p-1",
        "orders/category:masks", "units/category:masks", "revenue/category:masks", "interest/category:masks")
    assert corroborators("product:p-1", "units", ("orders", "units")) == ("orders/product:p-1",)  # category unknown
    assert corroborators("category:masks", "units", watched) == ("orders/category:masks", "interest/category:masks")
    for key in ("region:hubei", "channel:web", "store:s-1"):
        assert corroborators(key, "units", watched) is None
    assert corroborators("category:masks", "orders", watched) is None
    assert corroborators("category:masks", "interest", watched) is None
    assert parent_key("product:p-1", "region:x") is None  # only a category is a product's parent


def test_ingest_sends_a_products_category() -> None:
    line = {"product_id": "m-7", "category": "masks", "price": 10.0, "quantity": 2}
    order = Touchpoint("m1", "track", T0, T0, (("user_id", "u"),), event="Order Completed", region="hubei",
                       products=[line], order_id="o1", currency="CNY")
    pending = PendingCounts()
    pending.add(0, 0, [order], 3600)
    values = {k.decode() + "/" + orjson.loads(v)["m"]: orjson.loads(v) for k, v in pending.take().records()}
    assert values["product:m-7/units"]["in"] == "category:masks"
    assert all("in" not in v for k, v in values.items() if not k.startswith("product:"))
    # Without the category dimension there is no parent to name.
    narrow = PendingCounts(("product", "region"))
    narrow.add(0, 0, [order], 3600)
    assert all("in" not in orjson.loads(v) for _, v in narrow.take().records())


def _two_workers(parent_surges: bool, shared: bool, seed: int = 3) -> list[dict]:
    """The category x region key (units and orders) on one worker's stage, its category (orders)
    on another's; ``shared``: the first sees the second's published open alerts, as the agent
    hands them over from Redis (open_alerts.py). The OPEN records of the key's units."""
    rng = random.Random(seed)
    config = StageConfig(bucket_s=3600, lateness_s=0, timezone="UTC", measures=("orders", "units"), pool_floor=0.0)
    here, there = DemandStage(config, {}, {}), DemandStage(config, {}, {})
    child, parent = "category_region:e|beijing", "category:e"
    view: dict[str, str] = {}
    opens = []
    for h in range(DAYS * 24 + 30):
        surge = h in SURGE
        n = _poisson(rng, 90 if surge and parent_surges else 30)
        for a in there.handle(1, orjson.dumps({"k": parent, "m": "orders", "b": T0 + h * H, "n": n, "c": [[1, n, h]]})).alerts:
            if a["state"] == OPEN:
                view[f"{a['measure']}/{a['key']}"] = a["direction"]
            elif a["state"] in ("RESOLVED", "NEW_NORMAL"):
                view.pop(f"{a['measure']}/{a['key']}", None)
        here.elsewhere = dict(view) if shared else None
        for measure, mu in (("orders", 8), ("units", 60 if surge else 20)):
            n = _poisson(rng, mu)
            value = orjson.dumps({"k": child, "m": measure, "b": T0 + h * H, "n": n, "c": [[0, n, 2 * h + (measure == "units")]]})
            opens += [a for a in here.handle(0, value).alerts if a["state"] == OPEN and a["measure"] == "units"]
    return opens


def test_a_category_on_another_worker_corroborates_through_the_shared_view() -> None:
    carried = _two_workers(parent_surges=True, shared=True)
    assert len(carried) == 1 and carried[0]["direction"] == "surge"
    # With the shared view the flat category is seen, and the units surge alone stays silent ...
    assert _two_workers(parent_surges=False, shared=True) == []
    # ... without it the category is out of sight and only the key's own (flat) orders judge: silent too.
    assert _two_workers(parent_surges=False, shared=False) == []
    # Out of sight and surging: nothing corroborates what cannot be seen (the key's orders are flat).
    assert _two_workers(parent_surges=True, shared=False) == []
