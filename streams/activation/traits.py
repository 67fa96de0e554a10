"""Computed traits: per-profile bounded state, ``fold`` one event, ``merge`` two states exactly,
``evaluate`` at a time ``now`` (so a windowed trait changes as its window slides, without events).

The state is a JSON-safe dict kept under ``"ax"`` in the profile value (streams/profiles/profile.py
carries unknown keys through fold and encode)::

    w  {trait: {day: n}}          windowed count/sum per UTC day (integers: revenue in minor units)
    t  {trait: n}                 lifetime count/sum
    d  {trait: {day: [v, ...]}}   windowed distinct: sorted values per day (at most DISTINCT_PER_DAY)
    f  {trait: [value, ts]}       first value: the least (ts, json(value))
    l  {trait: [value, ts]}       last value: the greatest (ts, json(value))
    s  {trait: ts}                days_since: latest matching event time
    m  {audience: k}              audience transitions so far (odd = member; streams/activation/audiences.py)
    h  hash of the last published profile update
    ts time stamped on the last records published for this id (never goes back; stage.py)

Exactness. Every part is a commutative, associative, idempotent-free aggregate of the events' own
data: sums per day, set unions per day, min/max by a total order. Pruning keeps, per windowed trait,
the days after ``max_day - window`` where ``max_day`` is the latest day of any matching event; that
set is a function of the events alone, so folding in any order and merging in any tree give the
same state (tests/unit/activation/test_traits.py, property-tested). A day is only dropped once no
later ``now`` can see it (provided ``now`` is not earlier than the latest event day).
Bound: per windowed trait at most ``window + 1`` days; distinct sets at most
``DISTINCT_PER_DAY`` values a day (the smallest kept: still order-independent; a count is exact
while no day exceeds it).
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.activation.definitions import Definitions, TraitDef

__all__ = ["fold", "merge", "evaluate", "due", "DAY_MS", "DISTINCT_PER_DAY", "event_facts", "is_order", "new_state"]

DAY_MS = 86_400_000
DISTINCT_PER_DAY = 64
_ORDER = "Order Completed"


def new_state() -> dict[str, Any]:
    return {}


def is_order(event: dict[str, Any]) -> bool:
    """The same rule the profile uses to count an order (streams/profiles/profile.py)."""
    return event.get("event") == _ORDER or (event.get("order_id") is not None and event.get("revenue") is not None)


def _products(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in (event.get("products") or ()) if isinstance(p, dict)]


def event_facts(event: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
    """(categories of the event: its own and its products', order kept, no repeats; is it an order)."""
    seen: dict[str, None] = {}
    c = event.get("category")
    if isinstance(c, str) and c:
        seen[c] = None
    for p in _products(event):
        pc = p.get("category")
        if isinstance(pc, str) and pc:
            seen[pc] = None
    return tuple(seen), is_order(event)


def _quantity(p: dict[str, Any]) -> int:
    q = p.get("quantity", 1)
    if isinstance(q, bool) or not isinstance(q, (int, float)):
        return 1
    return max(0, round(q))


def _measure(t: TraitDef, event: dict[str, Any], cats: tuple[str, ...], order: bool) -> int | None:
    """The integer a count/sum trait adds for this event, None when it does not apply."""
    if t.of == "events":
        return 1
    if not order:
        return None
    if t.of == "orders":
        return 1
    if t.of == "units":
        allowed = dict(t.where).get("category")
        prods = _products(event)
        if not prods:
            return 1 if allowed is None or any(c in allowed for c in cats) else None
        return sum(_quantity(p) for p in prods if allowed is None or p.get("category") in allowed or
                   (not p.get("category") and event.get("category") in allowed))
    # revenue, in minor units of the trait's currency
    revenue = event.get("revenue")
    if revenue is None or isinstance(revenue, bool) or (event.get("currency") or "XXX") != t.currency:
        return None
    return round(float(revenue) * 100)


def _value(t: TraitDef, event: dict[str, Any], cats: tuple[str, ...]) -> list[Any]:
    """Values a first/last/distinct trait sees in this event."""
    of = t.of
    if of == "category":
        return list(cats)
    if of == "product":
        return [str(p["product_id"]) for p in _products(event) if p.get("product_id") is not None]
    if of == "revenue":
        r = event.get("revenue")
        return [] if r is None or isinstance(r, bool) or not is_order(event) else [float(r)]
    v = event.get(of)
    return [v] if isinstance(v, str) and v else []


def _order_key(value: Any, ts: int) -> tuple[int, bytes]:
    return ts, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def fold(ax: dict[str, Any], event: dict[str, Any], defs: Definitions) -> dict[str, Any]:
    """Apply one (new, deduplicated) event to the activation state ``ax``; mutates and returns it."""
    ts = int(event["ts_ms"])
    day = ts // DAY_MS
    cats, order = event_facts(event)
    for t in defs.traits:
        kind = t.kind
        if kind == "score" or not t.matches(event, cats):
            continue
        if kind in ("count", "sum"):
            n = _measure(t, event, cats, order)
            if n is None:
                continue
            if t.window_days is None:
                part = ax.setdefault("t", {})
                part[t.name] = part.get(t.name, 0) + n
            else:
                _add_days(ax.setdefault("w", {}).setdefault(t.name, {}), {str(day): n}, t.window_days, _sum)
        elif kind == "distinct":
            values = _value(t, event, cats)
            if values:
                _add_days(ax.setdefault("d", {}).setdefault(t.name, {}), {str(day): sorted(set(values))}, t.window_days or 1, _union)
        elif kind in ("first", "last"):
            for v in _value(t, event, cats)[:1]:
                _pick(ax.setdefault(kind[0], {}), t.name, [v, ts], first=kind == "first")
        elif kind == "days_since":
            if t.of == "events" or order:
                part = ax.setdefault("s", {})
                if part.get(t.name, -1 << 62) < ts:
                    part[t.name] = ts
    return ax


def merge(into: dict[str, Any], other: dict[str, Any], defs: Definitions) -> dict[str, Any]:
    """Fold the activation state ``other`` (of a profile merged into this one) into ``into``.

    ``m``, ``h`` and ``ts`` are not merged: they describe what was published for each profile id.
    """
    windows = {t.name: t.window_days or 1 for t in defs.traits}
    for name, n in (other.get("t") or {}).items():
        part = into.setdefault("t", {})
        part[name] = part.get(name, 0) + n
    for part_name, combine in (("w", _sum), ("d", _union)):
        for name, days in (other.get(part_name) or {}).items():
            if name in windows:
                _add_days(into.setdefault(part_name, {}).setdefault(name, {}), days, windows[name], combine)
    for part_name, first in (("f", True), ("l", False)):
        for name, pair in (other.get(part_name) or {}).items():
            _pick(into.setdefault(part_name, {}), name, list(pair), first=first)
    for name, ts in (other.get("s") or {}).items():
        part = into.setdefault("s", {})
        if part.get(name, -1 << 62) < ts:
            part[name] = ts
    return into


def _sum(a: Any, b: Any) -> Any:
    return a + b


def _union(a: list[Any], b: list[Any]) -> list[Any]:
    return sorted(set(a) | set(b))[:DISTINCT_PER_DAY]


def _add_days(days: dict[str, Any], add: dict[str, Any], window: int, combine: Any) -> None:
    """Combine per-day values, then drop the days no window can see any more (see module doc)."""
    top = max((int(d) for d in days), default=None)
    for d, v in add.items():
        old = days.get(d)
        days[d] = (v[:DISTINCT_PER_DAY] if isinstance(v, list) else v) if old is None else combine(old, v)
        di = int(d)
        if top is None or di > top:
            top = di
    if top is None:
        return
    floor = top - window  # keep days > floor
    for d in [d for d in days if int(d) <= floor]:
        del days[d]


def _pick(part: dict[str, list[Any]], name: str, pair: list[Any], first: bool) -> None:
    old = part.get(name)
    if old is None:
        part[name] = pair
        return
    new_key, old_key = _order_key(pair[0], pair[1]), _order_key(old[0], old[1])
    if (new_key < old_key) if first else (new_key > old_key):
        part[name] = pair


def _window_total(days: dict[str, Any], window: int, today: int) -> int:
    lo = today - window  # days lo+1 .. today
    total = 0
    for d, v in days.items():
        if lo < int(d) <= today:
            total += v
    return total


_NONE: dict[str, Any] = {}


def evaluate(ax: dict[str, Any], defs: Definitions, now_ms: int) -> dict[str, Any]:
    """Every computed trait's value at ``now_ms`` (revenue in major units; none when no data)."""
    today = now_ms // DAY_MS
    out: dict[str, Any] = {}
    # Once per settled profile: each part of the state looked up once, not once per trait.
    get = ax.get
    lifetime, windowed, distinct = get("t") or _NONE, get("w") or _NONE, get("d") or _NONE
    firsts, lasts, latest = get("f") or _NONE, get("l") or _NONE, get("s") or _NONE
    scores = []
    for t in defs.traits:
        kind = t.kind
        if kind == "count" or kind == "sum":
            if t.window_days is None:
                n = lifetime.get(t.name, 0)
            else:
                n = _window_total(windowed.get(t.name, _NONE), t.window_days, today)
            out[t.name] = n / 100 if t.of == "revenue" else n
        elif kind == "distinct":
            lo = today - (t.window_days or 1)
            seen: set[Any] = set()
            for d, values in (distinct.get(t.name) or _NONE).items():
                if lo < int(d) <= today:
                    seen.update(values)
            out[t.name] = len(seen)
        elif kind == "first" or kind == "last":
            pair = (firsts if kind == "first" else lasts).get(t.name)
            out[t.name] = None if pair is None else pair[0]
        elif kind == "days_since":
            ts = latest.get(t.name)
            out[t.name] = None if ts is None else max(0, (now_ms - ts) // DAY_MS)
        elif kind == "score":
            scores.append(t)
    for t in scores:
        out[t.name] = score(out.get(t.source), t)
    return out


def score(value: Any, t: TraitDef) -> int:
    """1..len(thresholds)+1 (higher = better); 0 when the scored trait has no value."""
    if value is None or isinstance(value, (bool, str)):
        return 0
    if t.higher_is_better:
        return 1 + sum(1 for x in t.thresholds if value >= x)
    return 1 + sum(1 for x in t.thresholds if value <= x)


def due(ax: dict[str, Any], defs: Definitions, now_ms: int) -> int | None:
    """The earliest time after ``now_ms`` at which :func:`evaluate` may give another answer (a day
    leaves or enters a window, a days_since count grows), None if no trait depends on time."""
    today = now_ms // DAY_MS
    windows, days_since = _timing(defs)
    earliest: int | None = None
    for part in ("w", "d"):
        for name, days in (ax.get(part) or _NONE).items():
            w = windows.get(name)
            if not w:
                continue
            for d in days:
                di = int(d)
                nxt = di if di > today else di + w  # enters on its own day, leaves ``w`` days later
                if nxt > today and (earliest is None or nxt < earliest):
                    earliest = nxt
    if days_since:
        latest = ax.get("s") or _NONE
        if any(name in latest for name in days_since) and (earliest is None or today + 1 < earliest):
            earliest = today + 1
    return None if earliest is None else earliest * DAY_MS


_TIMING: dict[int, tuple[tuple[TraitDef, ...], dict[str, int], tuple[str, ...]]] = {}


def _timing(defs: Definitions) -> tuple[dict[str, int], tuple[str, ...]]:
    """(window per windowed trait, names of the days_since traits) of ``defs``, worked out once
    per definitions (tied to their traits tuple by identity: :func:`due` runs once per settle)."""
    traits = defs.traits
    held = _TIMING.get(id(traits))
    if held is None or held[0] is not traits:
        if len(_TIMING) > 64:
            _TIMING.clear()
        held = _TIMING[id(traits)] = (traits, {t.name: t.window_days for t in traits if t.window_days},
                                      tuple(t.name for t in traits if t.kind == "days_since"))
    return held[1], held[2]
