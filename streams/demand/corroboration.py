"""Corroboration: a units or revenue shift of one category's keys is published only when the
same key's orders or interest, or its category, moved the same way.

The rule, as a planner states it: *more units of one product (or of one category, overall or in
one region) without more orders, more interest, or its category moving is a few big baskets, not
demand.* Summed measures are lumpy (one order of 20 units), and a sparse key's seasonal slots sit
far below its level in many hours, so a basket there reads as a x2 surge the count model cannot
tell from a real one (docs/demand.md, Lifecycle item 10). Orders and interest are counts of people
acting; the category is where a real shift of its products or regions shows first.

Which series may corroborate which (:func:`corroborators`):

* gated: ``units`` and ``revenue`` of ``product``, ``category`` and ``category_region`` keys;
* by: the same key's ``orders`` and ``interest``, and the parent category's series of every
  watched measure (``category_region:c|r`` -> ``category:c``; a product -> the category of its
  order lines, which the ingest side sends with the product's sums as ``"in"``);
* regions, channels and stores are not gated: they sum many categories, and a real shift of a
  few of them moves their units with nothing else alerting (the crisis replay has such alerts).

The stage evaluates the rule with the alerts it knows are open: those of the partitions its
worker owns, and the other workers' as shared through Redis (:mod:`~streams.demand.open_alerts`).
A corroborator it cannot see (no shared view yet) does not count either way; a series with no
visible corroborator is published as before.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CORROBORATING", "GATED_DIMENSIONS", "GATED_MEASURES", "corroborators", "parent_key"]

GATED_MEASURES = frozenset({"units", "revenue"})
GATED_DIMENSIONS = frozenset({"product", "category", "category_region"})
#: Measures of the key itself that corroborate its units and revenue.
CORROBORATING = ("orders", "interest")


def parent_key(dim_key: str, recorded: str | None = None) -> str | None:
    """The category key above ``dim_key``: derived for a category x region, ``recorded`` (the
    category of the product's order lines) for a product, none for other keys.

    >>> parent_key("category_region:masks|hubei"), parent_key("product:m-1", "category:masks"), parent_key("region:hubei")
    ('category:masks', 'category:masks', None)
    """
    dim, _, value = dim_key.partition(":")
    if dim == "category_region":
        return "category:" + value.split("|", 1)[0]
    if dim == "product" and recorded and recorded.startswith("category:"):
        return recorded
    return None


def corroborators(dim_key: str, measure: str, watched: Iterable[str], parent: str | None = None) -> tuple[str, ...] | None:
    """The ``(dimension key, measure)`` series, as ``measure/key`` strings, that may corroborate
    one series; ``None`` when the series is not gated.

    >>> corroborators("category_region:masks|hubei", "units", ("orders", "units", "interest"))
    ('orders/category_region:masks|hubei', 'interest/category_region:masks|hubei', 'orders/category:masks', 'units/category:masks', 'interest/category:masks')
    >>> corroborators("category:masks", "orders", ("orders", "units")) is None, corroborators("region:hubei", "units", ("orders",)) is None
    (True, True)
    """
    if measure not in GATED_MEASURES or dim_key.partition(":")[0] not in GATED_DIMENSIONS:
        return None
    watched = tuple(watched)
    own = tuple(f"{m}/{dim_key}" for m in CORROBORATING if m in watched and m != measure)
    above = parent_key(dim_key, parent)
    theirs = () if above is None else tuple(f"{m}/{above}" for m in watched)
    return own + theirs
