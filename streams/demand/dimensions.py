"""Demand dimensions and measures of an event (what it adds to which series; the sums held across
ingest batches are in :mod:`streams.demand.pending`).

Each applied event adds to zero or more *series* ``(dimension key, measure)``:

* ``orders``: 1 per order (an "Order Completed" event or an equivalent name, see
  :data:`ORDER_EVENTS`), for every key the order touches; an order id seen again (by the same
  ingest worker, within its last :data:`ORDER_MEMORY` order ids) does not count again;
* ``units``: the sum of the order's product quantities (1 when a product has none), per key;
* ``revenue``: the order's amount in the reporting currency (``properties.revenue`` or ``total``
  for region, channel and store; price x quantity of the key's products for product and category
  keys, or the order amount split by quantity when prices are missing); "Order Refunded" /
  "Order Cancelled" subtract theirs. Events in another currency are not summed (no exchange
  rates in the stream): they are counted in ``skipped_currency``;
* ``interest``: 1 per product view, add-to-cart, search, list view, ... (:data:`INTEREST_EVENTS`)
  and per page/screen view of a category or product: a leading indicator.

The ingest agent sums these per (key, measure, event-time bucket) until its next commit
(:class:`streams.demand.pending.PendingCounts`), so the demand stage receives one partial sum per
series and bucket per commit interval, not one per event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

from streams.events.model import Touchpoint

__all__ = [
    "DIMENSIONS", "MEASURES", "LEGACY_MEASURE", "ORDER_EVENTS", "REFUND_EVENTS", "INTEREST_EVENTS",
    "KeyShape", "Shape", "dimension_keys", "event_measures", "event_shape", "kind_of", "measures_of",
    "parse_dimensions", "parse_measures", "signature",
]

DIMENSIONS = ("product", "category", "region", "channel", "category_region", "store")
MEASURES = ("orders", "units", "revenue", "interest")
#: Records and table entries written before measures existed counted every demand event.
LEGACY_MEASURE = "events"
#: Event names (compared case-insensitively) that complete an order: Segment's e-commerce spec v2
#: "Order Completed", its v1 name, and the usual equivalents of other trackers.
ORDER_EVENTS = frozenset({"order completed", "completed order", "order placed", "purchase", "purchased", "checkout completed"})
#: Event names whose amount is subtracted from revenue.
REFUND_EVENTS = frozenset({"order refunded", "refunded order", "order cancelled", "order canceled", "cancelled order"})
#: Track event names that show interest (Segment e-commerce spec v2 browsing and cart events).
INTEREST_EVENTS = frozenset({
    "product viewed", "viewed product", "product clicked", "product added", "added product", "product added to wishlist",
    "products searched", "product list viewed", "product list filtered", "cart viewed", "checkout started",
    "promotion clicked", "product shared",
})


def _parse_names(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown demand {what}(s) {unknown}; known: {', '.join(known)}")
    return names


def parse_dimensions(text: str) -> tuple[str, ...]:
    """Comma-separated dimension names; ValueError names the unknown ones.

    >>> parse_dimensions("category, region")
    ('category', 'region')
    """
    return _parse_names(text, DIMENSIONS, "dimension")


def parse_measures(text: str) -> tuple[str, ...]:
    """Comma-separated measure names; ValueError names the unknown ones.

    >>> parse_measures("orders,interest")
    ('orders', 'interest')
    """
    return _parse_names(text, MEASURES, "measure")


def dimension_keys(t: Touchpoint, dimensions: Iterable[str] = DIMENSIONS) -> set[str]:
    """The keys ``dimension:value`` an event could count towards (each at most once).

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
    if "store" in wanted and t.store:
        keys.add(f"store:{t.store}")
    if "category_region" in wanted and t.region:
        keys.update(f"category_region:{c}|{t.region}" for c in categories)
    return keys


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def kind_of(t: Touchpoint) -> str | None:
    if t.type in ("page", "screen"):
        return "interest"
    if t.type != "track" or not t.event:
        return None
    name = t.event.strip().lower()
    if name in ORDER_EVENTS:
        return "order"
    if name in REFUND_EVENTS:
        return "refund"
    if name in INTEREST_EVENTS:
        return "interest"
    return None


def _line_amounts(t: Touchpoint) -> list[tuple[dict[str, Any], float, float | None]]:
    """(product, quantity, amount or None) per product line of the event."""
    out = []
    for p in t.products:
        q = _number(p.get("quantity"))
        qty = q if q is not None and q > 0 else 1.0
        price = _number(p.get("price"))
        out.append((p, qty, None if price is None else price * qty))
    return out


class KeyShape(NamedTuple):
    """One key an event counts towards, the product lines its units and amount come from (None:
    the whole event's: region, channel, store, or a category the event names without a line of
    it), and its series (made once per shape, not per event)."""

    key: str
    lines: tuple[int, ...] | None
    orders: tuple[str, str]
    units: tuple[str, str]
    revenue: tuple[str, str]
    interest: tuple[str, str]


Shape = tuple[KeyShape, ...]


def event_shape(t: Touchpoint, dimensions: Iterable[str] = DIMENSIONS,
                interned: dict[tuple[str, tuple[int, ...] | None], KeyShape] | None = None) -> Shape:
    """The keys of :func:`dimension_keys`, each with the product lines it sums (:class:`KeyShape`).

    It depends only on the fields :func:`signature` reads, so events with one signature share it.
    ``interned``: the key shapes made so far (shared between the shapes of a memo).

    >>> tp = Touchpoint("m", "track", 0, 0, (("user_id", "u"),), event="Order Completed", region="hubei",
    ...                 products=[{"product_id": "m1", "category": "masks"}, {"product_id": "t1", "category": "travel"}])
    >>> sorted((k.key, k.lines) for k in event_shape(tp, ("product", "region")))
    [('product:m1', (0,)), ('product:t1', (1,)), ('region:hubei', None)]
    """
    products = t.products
    shape = []
    for key in dimension_keys(t, dimensions):
        dim, _, value = key.partition(":")
        lines: tuple[int, ...] | None
        if dim == "product":
            lines = _lines(products, "product_id", value)
        elif dim in ("category", "category_region"):
            cat = value.split("|", 1)[0] if dim == "category_region" else value
            lines = _lines(products, "category", cat)
            if not lines and t.category == cat:  # the event's own category, no matching line
                lines = None
        else:
            lines = None
        made = None if interned is None else interned.get((key, lines))
        if made is None:
            made = KeyShape(key, lines, (key, "orders"), (key, "units"), (key, "revenue"), (key, "interest"))
            if interned is not None:
                interned[(key, lines)] = made
        shape.append(made)
    return tuple(shape)


def _lines(products: list[dict[str, Any]], name: str, value: str) -> tuple[int, ...]:
    """Indices of the products whose ``name`` is ``value``."""
    if len(products) == 1:  # most events: no generator
        return (0,) if products[0].get(name) == value else ()
    return tuple(i for i, p in enumerate(products) if p.get(name) == value)


def signature(t: Touchpoint) -> tuple[Any, ...]:
    """What :func:`event_shape` reads of an event.

    >>> signature(Touchpoint("m", "page", 0, 0, (), channel="web", category="masks"))
    ('masks', None, 'web', None)
    """
    products = t.products
    if not products:
        return t.category, t.region, t.channel, t.store
    if len(products) == 1:
        p = products[0]
        return t.category, t.region, t.channel, t.store, p.get("product_id"), p.get("category")
    return (t.category, t.region, t.channel, t.store, *(x for p in products for x in (p.get("product_id"), p.get("category"))))


def event_measures(t: Touchpoint, dimensions: Iterable[str] = DIMENSIONS, measures: Iterable[str] = MEASURES,
                   currency: str = "CNY") -> dict[tuple[str, str], float]:
    """What one event adds to each series ``(key, measure)`` (order dedup not applied here).

    Revenue counts only in ``currency`` (an event without a currency is taken to be in it).

    >>> tp = Touchpoint("m", "track", 0, 0, (("user_id", "u"),), channel="web", event="Order Completed", region="hubei",
    ...                 products=[{"product_id": "m1", "category": "masks", "price": 2.5, "quantity": 4}], revenue=10.0)
    >>> event_measures(tp, ("category", "region"))[("category:masks", "units")]
    4.0
    """
    kind = kind_of(t)
    if kind is None:
        return {}
    return dict(measures_of(t, kind, event_shape(t, dimensions), frozenset(measures), currency))


def measures_of(t: Touchpoint, kind: str, shape: Shape, wanted: frozenset[str], currency: str) -> list[tuple[tuple[str, str], float]]:
    """``(series, value)`` of an event of ``kind`` (:func:`kind_of`) whose :func:`event_shape` is
    ``shape``: :func:`event_measures` as pairs (each series once)."""
    if not shape:
        return []
    if kind == "interest":
        return [(k.interest, 1.0) for k in shape] if "interest" in wanted else []
    out: list[tuple[tuple[str, str], float]] = []
    lines = _line_amounts(t)
    in_currency = (t.currency or currency).upper() == currency.upper()
    total_qty = sum(q for _, q, _ in lines) or 1.0
    line_total = sum(a for _, _, a in lines if a is not None)
    order_amount = t.revenue if t.revenue is not None else (line_total if lines else None)
    sign = -1.0 if kind == "refund" else 1.0
    orders = kind == "order" and "orders" in wanted
    units_wanted = kind == "order" and "units" in wanted
    revenue = "revenue" in wanted and in_currency
    for _, matched, orders_series, units_series, revenue_series, _ in shape:
        if matched is None:
            units, amount = (total_qty if lines else 1.0), (order_amount or 0.0)
        else:  # the units and amount of the lines the key matches
            units, amount = 0.0, 0.0
            for i in matched:
                _, q, a = lines[i]
                units += q
                if a is not None:
                    amount += a
                elif order_amount is not None:
                    amount += order_amount * q / total_qty
        if orders:
            out.append((orders_series, 1.0))
        if units_wanted:
            out.append((units_series, units))
        if revenue and amount:
            out.append((revenue_series, sign * amount))
    return out
