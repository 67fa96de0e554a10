"""Demand sums held across ingest batches until the next commit: what the ingest agent sends on
``demand-counts`` (one partial sum per series, bucket and commit interval, not one per event).
What each event adds to which series is :mod:`streams.demand.dimensions`."""

from __future__ import annotations

from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.demand.dimensions import DIMENSIONS, MEASURES, KeyShape, Shape, event_shape, kind_of, measures_of, signature
from streams.events.model import Touchpoint

__all__ = ["ORDER_MEMORY", "OrderMemory", "PendingCounts", "ShapeMemo", "partial_counts"]

#: Order ids remembered per ingest worker for the order dedup.
ORDER_MEMORY = 200_000


@dataclass
class OrderMemory:
    """The last ``size`` order ids counted (insertion order, oldest dropped first)."""

    size: int = ORDER_MEMORY
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def first_time(self, order_id: str) -> bool:
        if order_id in self.seen:
            return False
        self.seen[order_id] = None
        if len(self.seen) > self.size:
            self.seen.popitem(last=False)
        return True


@dataclass
class ShapeMemo:
    """:func:`event_shape` per :func:`signature`, for one choice of dimensions: the bench stream's
    events share a few thousand signatures (people browse and buy the same products in the same
    regions and channels). Cleared when full (cheaper than LRU bookkeeping; it refills within
    seconds).

    Only signatures of strings (and None) are kept: ``1``, ``1.0`` and ``True`` are equal but make
    different keys, and no other value equals a string, so an event that finds a shape here has
    the very values it was made of (the normaliser gives strings; other events are not memoised).
    """

    dimensions: tuple[str, ...] = DIMENSIONS
    size: int = 16_384
    shapes: dict[tuple[Any, ...], Shape] = field(default_factory=dict)
    # product key -> its category key (the category of its order lines), noted when a shape is
    # made: sent with the product's sums for the demand stage's corroboration (corroboration.py)
    parents: dict[str, str] = field(default_factory=dict)
    # one KeyShape per (key, lines), shared by the shapes: ~100 bytes per signature, not ~2 KB
    interned: dict[tuple[str, tuple[int, ...] | None], KeyShape] = field(default_factory=dict)

    def of(self, t: Touchpoint) -> Shape:
        sig = signature(t)
        try:
            shape = self.shapes.get(sig)
        except TypeError:  # an unhashable value (not from the normaliser)
            return event_shape(t, self.dimensions)
        if shape is None:
            if not all(v is None or type(v) is str for v in sig):
                return event_shape(t, self.dimensions)
            if len(self.shapes) >= self.size:
                self.shapes.clear()
                self.interned.clear()
                self.parents.clear()
            shape = self.shapes[sig] = event_shape(t, self.dimensions, self.interned)
            if "category" in self.dimensions:
                self._note_parents(t, shape)
        return shape

    def _note_parents(self, t: Touchpoint, shape: Shape) -> None:
        for k in shape:
            if k.lines and k.key.startswith("product:"):
                category = t.products[k.lines[0]].get("category")
                if category:  # a string: only signatures of strings reach here
                    self.parents[k.key] = "category:" + category


def partial_counts(touchpoints: Iterable[Touchpoint], bucket_s: int, dimensions: Iterable[str] = DIMENSIONS,
                   measures: Iterable[str] = MEASURES, currency: str = "CNY", orders: OrderMemory | None = None,
                   shapes: ShapeMemo | None = None) -> tuple[dict[tuple[str, str, int], float], dict[str, int]]:
    """Sums per (key, measure, bucket start in ms, UTC) over a batch, and what was not counted
    (``{"repeated_order": n, "skipped_currency": n}``). ``shapes``: a memo of the events' shapes
    (of the same dimensions), kept across batches.

    Each series is summed in event order (revenue sums are not whole: the order of additions is
    part of the result), in one dict per bucket so that an event's series need no new tuples.
    """
    bucket_ms = bucket_s * 1000
    dims, wanted = tuple(dimensions), frozenset(measures)
    if shapes is None:
        shapes = ShapeMemo(dims)
    elif shapes.dimensions != dims:
        raise ValueError(f"a shape memo of dimensions {shapes.dimensions}, not {dims}")
    interest = "interest" in wanted
    by_bucket: dict[int, defaultdict[tuple[str, str], float]] = {}
    skipped = {"repeated_order": 0, "skipped_currency": 0}
    upper = currency.upper()
    shape_of = shapes.of
    for t in touchpoints:
        kind = kind_of(t)
        if kind is None:
            continue
        shape = shape_of(t)
        if kind == "interest":
            if not interest or not shape:
                continue
            measured = None
        else:
            measured = measures_of(t, kind, shape, wanted, currency)
            if not measured:
                continue
            if kind == "order" and t.order_id and orders is not None and not orders.first_time(t.order_id):
                skipped["repeated_order"] += 1
                continue
            if t.currency and t.currency.upper() != upper:
                skipped["skipped_currency"] += 1
        start = t.ts_ms - t.ts_ms % bucket_ms
        sums = by_bucket.get(start)
        if sums is None:
            sums = by_bucket[start] = defaultdict(float)
        if measured is None:  # interest: 1 per key
            for k in shape:
                sums[k.interest] += 1.0
        else:
            for series, v in measured:
                sums[series] += v
    return {(key, measure, start): v for start, sums in by_bucket.items() for (key, measure), v in sums.items()}, skipped


@dataclass
class PendingCounts:
    """Demand sums held across ingest batches until they are sent (at the next commit).

    One record per (key, measure, bucket) leaves per commit interval, whatever the batch size:
    ``{"k": key, "m": measure, "b": bucket_ms, "n": total, "c": [[source partition, sum, last offset], ...]}``,
    plus ``"in": "category:<c>"`` on a product's records when its category is known (the demand
    stage's corroboration rule)
    (Kafka key: the dimension key, so every measure of a key lives on one demand partition). The
    last offset is the latest input offset of that source partition the sums cover; the demand
    stage keeps it per series to skip sums a restarted worker sends again.
    """

    dimensions: tuple[str, ...] = DIMENSIONS
    measures: tuple[str, ...] = MEASURES
    currency: str = "CNY"
    counts: dict[tuple[str, str, int], defaultdict[int, float]] = field(default_factory=dict)  # per source partition
    last_offset: dict[int, int] = field(default_factory=dict)
    orders: OrderMemory = field(default_factory=OrderMemory)
    skipped: Counter[str] = field(default_factory=Counter)
    shapes: ShapeMemo | None = field(default=None, compare=False, repr=False)  # made at first use (a cache, not state)


    def __len__(self) -> int:
        return len(self.counts)

    def add(self, partition: int, last_offset: int, touchpoints: Iterable[Touchpoint], bucket_s: int) -> None:
        """Sum applied events of one source partition, up to and including ``last_offset``."""
        if self.shapes is None:
            self.shapes = ShapeMemo(tuple(self.dimensions))
        sums, skipped = partial_counts(touchpoints, bucket_s, self.dimensions, self.measures, self.currency, self.orders,
                                       self.shapes)
        self.skipped.update(skipped)
        for series_bucket, n in sums.items():
            per_source = self.counts.get(series_bucket)
            if per_source is None:
                per_source = self.counts[series_bucket] = defaultdict(float)
            per_source[partition] += n
        self.last_offset[partition] = max(last_offset, self.last_offset.get(partition, last_offset))

    def take(self) -> PendingCounts:
        """Everything pending, leaving this empty (``merge`` puts it back if sending fails)."""
        out = PendingCounts(self.dimensions, self.measures, self.currency, self.counts, self.last_offset, self.orders,
                            shapes=self.shapes)
        self.counts, self.last_offset = {}, {}
        return out

    def merge(self, other: PendingCounts) -> None:
        for series_bucket, per_source in other.counts.items():
            mine = self.counts.setdefault(series_bucket, defaultdict(float))
            for p, n in per_source.items():
                mine[p] += n
        for p, o in other.last_offset.items():
            self.last_offset[p] = max(o, self.last_offset.get(p, o))

    def records(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` per (dimension key, measure, bucket), oldest bucket first, so each
        demand partition's event-time clock advances in order."""
        out = []
        parents = self.shapes.parents if self.shapes is not None else {}
        for (key, measure, bucket), per_source in sorted(self.counts.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
            parts = [[p, _clean(n), self.last_offset[p]] for p, n in sorted(per_source.items())]
            value = {"k": key, "m": measure, "b": bucket, "n": _clean(sum(per_source.values())), "c": parts}
            parent = parents.get(key)
            if parent is not None:
                value["in"] = parent
            out.append((key.encode(), orjson.dumps(value)))
        return out


def _clean(x: float) -> float | int:
    """Whole numbers as ints (counts stay counts), amounts to the cent; a sum JSON cannot hold as a
    64-bit integer stays a float (valid events reach 10^20: 100 lines of 10^12 x 10^6).

    >>> _clean(3.0), _clean(2.499), _clean(1e19)
    (3, 2.5, 1e+19)
    """
    r = round(x, 2)
    return int(r) if r == int(r) and -_INT64 <= r < _INT64 else r


_INT64 = 2.0 ** 63
