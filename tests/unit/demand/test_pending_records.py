"""Demand-counts records hold whatever valid events sum to."""

from __future__ import annotations

import orjson

from streams.demand.pending import PendingCounts
from streams.events.model import Touchpoint


def test_sums_beyond_a_64_bit_integer_are_sent_as_floats() -> None:
    # The schema allows price <= 1e12, quantity <= 1e6 and 100 lines: one valid order reaches 1e20.
    # A whole sum that large made orjson refuse the record: PendingCounts.records() raised
    # TypeError inside IngestStage.flush_demand, before the send (the taken counts were dropped).
    lines = [{"product_id": f"p{i}", "category": "gold", "price": 1e12, "quantity": 1_000_000} for i in range(100)]
    order = Touchpoint("m1", "track", 1_000_000, 0, (("user_id", "u"),), event="Order Completed", region="hubei",
                       products=lines, currency="CNY")
    pending = PendingCounts(("category",), ("orders", "revenue"))
    pending.add(0, 7, [order], 300)
    records = {orjson.loads(value)["m"]: orjson.loads(value) for _, value in pending.records()}
    assert records["revenue"]["n"] == 1e20 and records["revenue"]["c"] == [[0, 1e20, 7]]
    assert records["orders"]["n"] == 1 and isinstance(records["orders"]["n"], int)  # counts stay integers
