"""Demand dimensions of an event, and pre-aggregation of a batch into partial counts.

The ingest agent sums each batch into counts per (dimension key, event-time bucket) so the demand
stage receives a few partial counts per batch instead of one record per event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from streams.events.model import Touchpoint

__all__ = ["DIMENSIONS", "dimension_keys", "partial_counts", "parse_dimensions"]

DIMENSIONS = ("product", "category", "region", "channel", "category_region")


def parse_dimensions(text: str) -> tuple[str, ...]:
    """Comma-separated dimension names; ValueError names the unknown ones.

    >>> parse_dimensions("category, region")
    ('category', 'region')
    """
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown demand dimension(s) {unknown}; known: {', '.join(DIMENSIONS)}")
    return names


def dimension_keys(t: Touchpoint, dimensions: Iterable[str] = DIMENSIONS) -> set[str]:
    """The keys ``dimension:value`` this event counts towards (each at most once).

    Only events that express demand count: track events with products or a category, and
    page/screen views of a category. Identify/alias/group calls are not demand.

    >>> sorted(dimension_keys(Touchpoint("m", "page", 0, 0, (("user_id", "u"),), channel="web", category="masks", region="hubei")))
    ['category:masks', 'category_region:masks|hubei', 'channel:web', 'region:hubei']
    """
    if t.type not in ("track", "page", "screen"):
        return set()
    categories = {p["category"] for p in t.products if p.get("category")}
    if t.category:
        categories.add(t.category)
    products = {p["product_id"] for p in t.products if p.get("product_id")}
    if not categories and not products:
        return set()
    wanted = set(dimensions)
    keys: set[str] = set()
    if "product" in wanted:
        keys.update(f"product:{p}" for p in products)
    if "category" in wanted:
        keys.update(f"category:{c}" for c in categories)
    if "region" in wanted and t.region:
        keys.add(f"region:{t.region}")
    if "channel" in wanted and t.channel:
        keys.add(f"channel:{t.channel}")
    if "category_region" in wanted and t.region:
        keys.update(f"category_region:{c}|{t.region}" for c in categories)
    return keys


def partial_counts(touchpoints: Iterable[Touchpoint], bucket_s: int, dimensions: Iterable[str] = DIMENSIONS) -> Counter[tuple[str, int]]:
    """Counts per (key, bucket start in ms, UTC) over a batch."""
    bucket_ms = bucket_s * 1000
    dims = tuple(dimensions)
    counts: Counter[tuple[str, int]] = Counter()
    for t in touchpoints:
        start = t.ts_ms - t.ts_ms % bucket_ms
        for key in dimension_keys(t, dims):
            counts[(key, start)] += 1
    return counts
