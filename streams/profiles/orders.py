"""Orders in a profile, per the Segment e-commerce spec (issue 17, item 7). Pure functions.

One order per order id per profile, whatever the source (e-commerce, CRM and POS report the same
order id): the profile keeps, per order id, what it has seen of that order, and the totals are
the sum of what each order id contributes. Per order id the parts are joined by rules that do not
depend on arrival order (earliest completion wins, largest refund wins, cancelled once is
cancelled), so folding events in any order and merging profiles give the same totals.

Which events count (``streams/profiles/profile.py`` calls :func:`fold_order` for every event):

- completed: ``Order Completed`` (spec v2) and ``Completed Order`` (spec v1). Nothing else is an
  order: ``Checkout Started``, ``Order Updated``, a ``Product Added`` carrying an ``order_id`` ...
- refunded: ``Order Refunded`` (v2) and ``Refunded Order`` (v1).
- cancelled: ``Order Cancelled`` (v2).

Stored in the value (``od``, created with the first such event; a value without it -- every value
written before this module -- is read as it is: its ``oc``/``rv`` are kept as legacy totals)::

    od = {"o": {order_id: [first_ts, completion, refund, cancelled]},   # at most Limits.orders
          "t": {"g": {cur: gross}, "rn": refunds, "ra": {cur: refunded}, "cn": cancellations,
                "un": refunds/cancellations of orders this profile never saw completed}}
    completion = [ts, currency, minor units] | None    refund = [full, minor units, currency] | None

``oc`` (orders counted: completed and not cancelled) and ``rv`` (net revenue per currency: gross
minus refunds minus cancelled orders) stay where they were in the value, so every reader of them
keeps working; they and ``t`` are updated incrementally (contribution out, join, contribution in).

Bound: past ``Limits.orders`` live order ids the entry with the smallest ``(first_ts, order_id)``
is retired: it leaves ``o`` but its contribution stays in the totals. A report of a retired order
id arriving later is a new order id to the profile (counted again; a refund of it is counted as
unmatched). Below the bound everything is exact under any fold order and any merge.
"""

from __future__ import annotations

from typing import Any

from streams.events.model import dedup_id

__all__ = ["COMPLETED", "REFUNDED", "CANCELLED", "fold_order", "merge_orders", "render_orders", "order_totals"]

COMPLETED = frozenset({"Order Completed", "Completed Order"})
REFUNDED = frozenset({"Order Refunded", "Refunded Order"})
CANCELLED = frozenset({"Order Cancelled"})
NO_CURRENCY = "XXX"  # ISO 4217 "no currency"

# An entry's contribution (amounts as (currency, minor units)): (counted, gross, net, refunds, refunded, cancellations, unmatched).
Contribution = tuple[int, tuple[str, int] | None, tuple[str, int] | None, int, tuple[str, int] | None, int, int]
_NOTHING: Contribution = (0, None, None, 0, None, 0, 0)


def _minor(amount: Any) -> int:
    return round(float(amount) * 100)


def _state(state: dict[str, Any]) -> dict[str, Any]:
    """``od``, created on first use; a value without it keeps its ``rv`` as legacy gross revenue."""
    od = state.get("od")
    if od is None:
        od = state["od"] = _legacy(state)
    return od


def _legacy(state: dict[str, Any]) -> dict[str, Any]:
    """The order part of a value without ``od``: no order ids; its ``rv`` was summed gross."""
    return {"o": {}, "t": {"g": {c: v for c, v in state["rv"].items() if v}, "rn": 0, "ra": {}, "cn": 0, "un": 0}}


def fold_order(state: dict[str, Any], event: dict[str, Any], name: Any, ts: int, max_orders: int, id_chars: int) -> None:
    """Apply one event's order part (no-op unless ``name`` is a completed/refunded/cancelled event)."""
    if name in COMPLETED:
        kind = 0
    elif name in REFUNDED:
        kind = 1
    elif name in CANCELLED:
        kind = 2
    else:
        return
    order_id = event.get("order_id")
    # No order id: the event is its own order (the stage folds each event once); a refund or a
    # cancellation naming no order can match nothing and is counted unmatched.
    key = str(order_id)[:id_chars] if order_id is not None else "~" + dedup_id(str(event.get("message_id", "")), event.get("scope"))
    od = _state(state)
    entry = _entry(event, kind, ts)
    old = od["o"].get(key)
    if old is not None:
        _apply(state, od, _contribution(old), -1)
        entry = _join(old, entry)
    od["o"][key] = entry
    _apply(state, od, _contribution(entry), 1)
    _retire(od["o"], max_orders)


def merge_orders(into: dict[str, Any], other: dict[str, Any], max_orders: int) -> None:
    """Fold ``other``'s order count, revenue and orders into ``into`` (exact below the bound)."""
    if "od" not in other and "od" not in into:
        # Neither knows order ids (values without orders, or written before this module): sums.
        into["oc"] += other["oc"]
        for cur, cents in other["rv"].items():
            into["rv"][cur] = into["rv"].get(cur, 0) + cents
        return
    od = _state(into)
    theirs = other.get("od") or _legacy(other)
    into["oc"] += other["oc"]
    mine_t, their_t = od["t"], theirs["t"]
    for part, add in ((into["rv"], other["rv"]), (mine_t["g"], their_t["g"]), (mine_t["ra"], their_t["ra"])):
        for cur, amount in add.items():
            _put(part, cur, part.get(cur, 0) + amount)
    for part in ("rn", "cn", "un"):
        mine_t[part] += their_t[part]
    mine = od["o"]
    for key, entry in theirs["o"].items():
        old = mine.get(key)
        if old is None:
            mine[key] = _copy(entry)
            continue
        # The same order in both: both contributions are in the sums now, the joined one belongs there.
        _apply(into, od, _contribution(old), -1)
        _apply(into, od, _contribution(entry), -1)
        mine[key] = joined = _join(old, entry)
        _apply(into, od, _contribution(joined), 1)
    _retire(mine, max_orders)


def order_totals(state: dict[str, Any]) -> dict[str, Any]:
    """The order part of a value as plain totals (a value without ``od``: its legacy oc/rv)."""
    t = (state.get("od") or _legacy(state))["t"]
    return {"count": state["oc"], "net": state["rv"], "gross": t["g"], "refunds": t["rn"], "refunded": t["ra"],
            "cancelled": t["cn"], "unmatched": t["un"]}


def render_orders(state: dict[str, Any]) -> dict[str, Any]:
    """``orders`` of the rendered profile: ``revenue`` is the lifetime value, net, per currency."""
    # Once per profile update (profile-updates): read straight from the value, no totals dict.
    t = (state.get("od") or _legacy(state))["t"]
    gross = t["g"]
    # A currency with gross revenue shows its net even at 0 (every order of it refunded).
    return {"count": state["oc"], "revenue": _money(state["rv"], gross), "gross": _money(gross),
            "refunds": {"count": t["rn"], "amount": _money(t["ra"])},
            "cancelled": t["cn"], "unmatched": t["un"]}


def _money(d: dict[str, int], keep: dict[str, int] | None = None) -> dict[str, float]:
    """Major units per currency, sorted: the currencies with a non-zero amount in ``d`` or ``keep``.

    >>> _money({"USD": 250, "CNY": 0}, {"EUR": 1})
    {'EUR': 0.0, 'USD': 2.5}
    """
    if not d and not keep:
        return {}
    if len(d) == 1 and (not keep or (len(keep) == 1 and keep.keys() == d.keys())):
        # One currency, the usual profile (once per profile update): no set, no sort.
        [(cur, amount)] = d.items()
        return {cur: round(amount / 100, 2)} if amount or (keep and keep[cur]) else {}
    shown = {cur for cur, c in d.items() if c}
    if keep:
        shown.update(cur for cur, c in keep.items() if c)
    return {cur: round(d.get(cur, 0) / 100, 2) for cur in sorted(shown)}


# -- entries -------------------------------------------------------------------------------------

def _entry(event: dict[str, Any], kind: int, ts: int) -> list[Any]:
    cur = event.get("currency") or NO_CURRENCY
    revenue = event.get("revenue")
    if kind == 0:
        return [ts, [ts, cur, 0 if revenue is None else max(0, _minor(revenue))], None, 0]
    if kind == 1:
        refund = [1, 0, cur] if revenue is None else [0, abs(_minor(revenue)), cur]
        return [ts, None, refund, 0]
    return [ts, None, None, 1]


def _join(a: list[Any], b: list[Any]) -> list[Any]:
    """Order-independent: earliest event time; earliest completion (ties: currency, amount);
    the largest refund (a full refund, amount unknown, beats any amount); cancelled if either."""
    return [min(a[0], b[0]), _pick(a[1], b[1], min), _pick(a[2], b[2], max), max(a[3], b[3])]


def _pick(a: list[Any] | None, b: list[Any] | None, how: Any) -> list[Any] | None:
    if a is None:
        return None if b is None else list(b)
    if b is None:
        return list(a)
    return list(how(a, b))


def _copy(entry: list[Any]) -> list[Any]:
    return [entry[0], None if entry[1] is None else list(entry[1]), None if entry[2] is None else list(entry[2]), entry[3]]


def _contribution(entry: list[Any]) -> Contribution:
    _, completion, refund, cancelled = entry
    if completion is None:
        if refund is None and not cancelled:
            return _NOTHING
        # Never seen completed here: counted apart, reduces nothing (there is no revenue to reduce).
        refunded = None if refund is None else (refund[2], refund[1])
        return (0, None, None, 1 if refund is not None else 0, refunded, 0, 1)
    _, cur, amount = completion
    back = 0 if refund is None else amount if refund[0] else min(refund[1], amount)
    if cancelled:
        return (0, (cur, amount), None, 1 if refund is not None else 0, None if refund is None else (cur, back), 1, 0)
    return (1, (cur, amount), (cur, amount - back), 1 if refund is not None else 0, None if refund is None else (cur, back), 0, 0)


def _apply(state: dict[str, Any], od: dict[str, Any], c: Contribution, sign: int) -> None:
    counted, gross, net, refunds, refunded, cancellations, unmatched = c
    t = od["t"]
    state["oc"] += sign * counted
    for part, money in ((state["rv"], net), (t["g"], gross), (t["ra"], refunded)):
        if money is not None:
            cur, amount = money
            _put(part, cur, part.get(cur, 0) + sign * amount)
    t["rn"] += sign * refunds
    t["cn"] += sign * cancellations
    t["un"] += sign * unmatched


def _put(part: dict[str, int], cur: str, total: int) -> None:
    """A currency is present iff its total is not zero: the same totals give the same dict."""
    if total:
        part[cur] = total
    else:
        part.pop(cur, None)


def _retire(orders: dict[str, list[Any]], keep: int) -> None:
    """Past the bound, the entry with the smallest (first_ts, order_id) leaves (totals keep it)."""
    while len(orders) > keep:
        del orders[min(orders, key=lambda k: (orders[k][0], k))]
