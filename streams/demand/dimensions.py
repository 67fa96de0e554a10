"""Demand dimensions of an event, and pre-aggregation into partial counts.

The ingest agent sums events into counts per (dimension key, event-time bucket) until its next
commit (:class:`PendingCounts`), so the demand stage receives one partial count per key and
bucket per commit interval, not one per event or per ingest batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from streams.events.model import Touchpoint

__all__ = ["DIMENSIONS", "PendingCounts", "dimension_keys", "partial_counts", "parse_dimensions"]

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


@dataclass
class PendingCounts:
    """Demand counts summed across ingest batches until they are sent (at the next commit).

    One record per (key, bucket) leaves per commit interval, whatever the batch size:
    ``{"k": key, "b": bucket_ms, "n": total, "c": [[source partition, count, last offset], ...]}``.
    The last offset is the latest input offset of that source partition the counts cover; the
    demand stage keeps it per key to skip counts a restarted worker sends again.
    """

    counts: dict[tuple[str, int], Counter[int]] = field(default_factory=dict)
    last_offset: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, partition: int, last_offset: int, touchpoints: Iterable[Touchpoint], bucket_s: int,
            dimensions: Iterable[str] = DIMENSIONS) -> None:
        """Count applied events of one source partition, up to and including ``last_offset``."""
        for key_bucket, n in partial_counts(touchpoints, bucket_s, dimensions).items():
            per_source = self.counts.get(key_bucket)
            if per_source is None:
                per_source = self.counts[key_bucket] = Counter()
            per_source[partition] += n
        self.last_offset[partition] = max(last_offset, self.last_offset.get(partition, last_offset))

    def take(self) -> PendingCounts:
        """Everything pending, leaving this empty (``merge`` puts it back if sending fails)."""
        out = PendingCounts(self.counts, self.last_offset)
        self.counts, self.last_offset = {}, {}
        return out

    def merge(self, other: PendingCounts) -> None:
        for key_bucket, per_source in other.counts.items():
            self.counts.setdefault(key_bucket, Counter()).update(per_source)
        for p, o in other.last_offset.items():
            self.last_offset[p] = max(o, self.last_offset.get(p, o))

    def records(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` per (dimension key, bucket), oldest bucket first, so each demand
        partition's event-time clock advances in order."""
        out = []
        for (key, bucket), per_source in sorted(self.counts.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            parts = [[p, n, self.last_offset[p]] for p, n in sorted(per_source.items())]
            out.append((key.encode(), orjson.dumps({"k": key, "b": bucket, "n": sum(per_source.values()), "c": parts})))
        return out
