"""The demand pre-aggregation's memo of event shapes (streams/demand/pending.py: ShapeMemo):
events that share a signature share a shape, and nothing else does."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from streams.demand.dimensions import event_measures, signature
from streams.demand.pending import PendingCounts, ShapeMemo, partial_counts
from streams.events.model import Touchpoint


def _tp(i: int, event: str = "Order Completed", **fields: Any) -> Touchpoint:
    return Touchpoint(f"m{i}", "track", 1_000_000 + i, 0, (("user_id", "u"),), event=event, **fields)


def _reference(tps: list[Touchpoint]) -> dict[tuple[str, str, int], float]:
    """Sums of event_measures per series, event by event (no order ids: no dedup)."""
    sums: defaultdict[tuple[str, str, int], float] = defaultdict(float)
    for t in tps:
        for (key, measure), v in event_measures(t).items():
            sums[(key, measure, t.ts_ms - t.ts_ms % 300_000)] += v
    return dict(sums)


def test_equal_values_of_other_types_are_not_taken_for_strings() -> None:
    # 1 == 1.0 == True, but each makes its own key ("category:1", "category:1.0", "category:True"),
    # and a product_id 1 never matches the key "product:1" (the shape of "1" would say it does)
    values: list[Any] = ["1", 1, 1.0, True, "1"]
    tps = [_tp(i, region=v, products=[{"product_id": v, "category": v, "price": 2.0, "quantity": 1}])
           for i, v in enumerate(values)]
    memo = ShapeMemo()
    sums, _ = partial_counts(tps, 300, shapes=memo)
    assert sums == _reference(tps)
    assert set(memo.shapes) == {signature(tps[0])}  # only the string signature was kept
    assert ("product:1", "units", 900_000) in sums and ("category:1.0", "orders", 900_000) in sums


def test_unhashable_values_are_measured_without_the_memo() -> None:
    # a region, channel or store is only formatted into keys: even a list works, as before the memo
    tps = [_tp(0, region=["a"], channel={"x": 1}, products=[{"product_id": "p", "category": "c", "price": 2.0}]),
           _tp(1, event="Product Viewed", store=["s"], category="c")]
    memo = ShapeMemo()
    sums, _ = partial_counts(tps, 300, shapes=memo)
    assert sums == _reference(tps) and ("region:['a']", "revenue", 900_000) in sums
    assert not memo.shapes


def test_a_full_memo_starts_again_and_counts_stay_the_same() -> None:
    tps = [_tp(i, event=("Product Viewed" if i % 3 else "Order Completed"), region=f"r{i % 7}", channel="web",
               products=[{"product_id": f"p{i % 11}", "category": "masks", "price": 1.5, "quantity": 2}]) for i in range(300)]
    memo = ShapeMemo(size=10)
    sums, _ = partial_counts(tps, 300, shapes=memo)
    assert sums == _reference(tps)
    assert 0 < len(memo.shapes) <= 10


def test_a_memo_of_other_dimensions_is_refused() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        partial_counts([], 300, ("region",), shapes=ShapeMemo(("category",)))
    pending = PendingCounts(("region",))
    pending.add(0, 5, [_tp(0, region="hubei", revenue=3.0)], 300)
    assert pending.shapes is not None and pending.shapes.dimensions == ("region",)
