"""Demand measures of events: orders, units, revenue (refunds subtract), interest; pre-aggregation."""

from __future__ import annotations

import orjson
import pytest

from streams.demand.dimensions import event_measures, parse_measures
from streams.demand.pending import OrderMemory, PendingCounts, partial_counts
from streams.events.model import Touchpoint

T = 1_767_571_200_000  # 2026-01-05T00:00:00Z
IDS = (("user_id", "u1"),)


def order(event: str = "Order Completed", order_id: str | None = "o-1", currency: str | None = "CNY",
          revenue: float | None = 31.0, ts: int = T, **kw) -> Touchpoint:
    products = kw.pop("products", [{"product_id": "m-1", "category": "masks", "price": 2.5, "quantity": 4},
                                   {"product_id": "s-1", "category": "sanitizer", "price": 7.0, "quantity": 3}])
    return Touchpoint("m", "track", ts, ts, IDS, channel="ecommerce", event=event, region="hubei", store="s-9",
                      products=products, order_id=order_id, revenue=revenue, currency=currency, **kw)


def test_an_order_counts_once_per_key_with_its_units_and_revenue() -> None:
    m = event_measures(order())
    assert m[("category:masks", "orders")] == 1 and m[("category:sanitizer", "orders")] == 1
    assert m[("category:masks", "units")] == 4 and m[("category:sanitizer", "units")] == 3
    assert m[("category:masks", "revenue")] == 10.0 and m[("product:s-1", "revenue")] == 21.0
    # Whole-order keys: the order's own amount (revenue/total), all its units.
    assert m[("region:hubei", "revenue")] == 31.0 and m[("store:s-9", "units")] == 7
    assert m[("channel:ecommerce", "orders")] == 1 and m[("category_region:masks|hubei", "units")] == 4
    assert not any(measure == "interest" for _, measure in m)


def test_refunds_subtract_revenue_only_and_views_are_interest() -> None:
    refund = event_measures(order("Order Refunded", revenue=10.0, products=[{"product_id": "m-1", "category": "masks", "price": 2.5, "quantity": 4}]))
    assert refund == {k: v for k, v in refund.items() if k[1] == "revenue"}
    assert refund[("category:masks", "revenue")] == -10.0 and refund[("region:hubei", "revenue")] == -10.0
    view = Touchpoint("v", "track", T, T, IDS, channel="web", event="Product Viewed", region="hubei",
                      products=[{"product_id": "m-1", "category": "masks"}])
    assert set(event_measures(view).values()) == {1.0} and {m for _, m in event_measures(view)} == {"interest"}
    page = Touchpoint("p", "page", T, T, IDS, channel="web", category="masks")
    assert event_measures(page) == {("category:masks", "interest"): 1.0, ("channel:web", "interest"): 1.0}
    ticket = Touchpoint("t", "track", T, T, IDS, channel="service", event="Support Ticket Opened", category="masks")
    assert event_measures(ticket) == {}  # a support ticket is not demand


def test_missing_prices_split_the_order_amount_by_quantity() -> None:
    m = event_measures(order(products=[{"product_id": "a", "category": "masks", "quantity": 1},
                                       {"product_id": "b", "category": "travel", "quantity": 3}], revenue=40.0))
    assert m[("category:masks", "revenue")] == 10.0 and m[("category:travel", "revenue")] == 30.0


def test_a_repeated_order_id_counts_once_and_other_currencies_are_not_summed() -> None:
    sums, skipped = partial_counts([order(), order(), order(order_id="o-2", currency="USD")], 3600, orders=OrderMemory())
    assert sums[("category:masks", "orders", T)] == 2 and sums[("category:masks", "units", T)] == 8
    assert sums[("region:hubei", "revenue", T)] == 31.0  # the USD order adds orders and units, not revenue
    assert skipped == {"repeated_order": 1, "skipped_currency": 1}


def test_only_watched_measures_and_dimensions_are_summed() -> None:
    sums, _ = partial_counts([order()], 3600, ("category",), ("orders",))
    assert set(sums) == {("category:masks", "orders", T), ("category:sanitizer", "orders", T)}
    with pytest.raises(ValueError, match="unknown demand measure"):
        parse_measures("orders,clicks")


def test_pending_records_carry_the_measure_and_amounts_to_the_cent() -> None:
    pending = PendingCounts(("region",), ("orders", "revenue"), "CNY")
    pending.add(0, 7, [order(revenue=10.1), order(order_id="o-2", revenue=0.1)], 3600)
    pending.add(1, 3, [order(order_id="o-3", revenue=0.2)], 3600)
    values = [orjson.loads(v) for _, v in pending.records()]
    assert [(v["k"], v["m"]) for v in values] == [("region:hubei", "orders"), ("region:hubei", "revenue")]
    assert values[0]["n"] == 3 and isinstance(values[0]["n"], int) and values[0]["c"] == [[0, 2, 7], [1, 1, 3]]
    assert values[1]["n"] == 10.4 and values[1]["c"] == [[0, 10.2, 7], [1, 0.2, 3]]
    # The order memory survives take(): a re-sent order after a flush still counts once.
    pending.take()
    pending.add(0, 8, [order()], 3600)
    assert len(pending) == 0 and pending.skipped["repeated_order"] == 1
