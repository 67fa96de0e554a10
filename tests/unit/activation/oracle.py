"""An independent oracle: computed traits and audience membership straight from raw events.

Written from docs/activation.md, not from streams/activation/traits.py: no state, no buckets, no
pruning; every trait is recomputed from the full list of a person's events at ``now``.
"""

from __future__ import annotations

from typing import Any

DAY = 86_400_000


def cats(e: dict[str, Any]) -> list[str]:
    out = []
    if e.get("category"):
        out.append(e["category"])
    for p in e.get("products") or []:
        if p.get("category") and p["category"] not in out:
            out.append(p["category"])
    return out


def is_order(e: dict[str, Any]) -> bool:
    return e.get("event") == "Order Completed" or (e.get("order_id") is not None and e.get("revenue") is not None)


def passes(t: Any, e: dict[str, Any]) -> bool:
    for field, allowed in t.where:
        if field == "category":
            if not set(cats(e)) & allowed:
                return False
        elif e.get(field) not in allowed:
            return False
    return True


def in_window(t: Any, e: dict[str, Any], now: int) -> bool:
    if t.window_days is None:
        return True
    day, today = e["ts_ms"] // DAY, now // DAY
    return today - t.window_days < day <= today


def trait_value(t: Any, events: list[dict[str, Any]], now: int, values: dict[str, Any]) -> Any:
    es = [e for e in events if passes(t, e)]
    if t.kind == "score":
        v = values[t.source]
        if v is None:
            return 0
        return 1 + sum(1 for x in t.thresholds if (v >= x if t.higher_is_better else v <= x))
    if t.kind == "count":
        return sum(1 for e in es if in_window(t, e, now) and (t.of == "events" or is_order(e)))
    if t.kind == "sum":
        total = 0
        for e in es:
            if not in_window(t, e, now) or not is_order(e):
                continue
            if t.of == "revenue":
                if e.get("revenue") is not None and (e.get("currency") or "XXX") == t.currency:
                    total += round(e["revenue"] * 100)
            else:
                allowed = dict(t.where).get("category")
                prods = e.get("products") or []
                if not prods:
                    total += 1
                for p in prods:
                    c = p.get("category") or e.get("category")
                    if allowed is None or c in allowed:
                        total += p.get("quantity", 1)
        return total / 100 if t.of == "revenue" else total
    if t.kind == "distinct":
        seen = set()
        for e in es:
            if in_window(t, e, now):
                if t.of == "category":
                    seen.update(cats(e))
                elif t.of == "product":
                    seen.update(str(p["product_id"]) for p in e.get("products") or [] if p.get("product_id") is not None)
                elif e.get(t.of):
                    seen.add(e[t.of])
        return len(seen)
    if t.kind in ("first", "last"):
        cands = []
        for e in es:
            if t.of == "revenue":
                v = e.get("revenue") if is_order(e) else None
            elif t.of == "category":
                v = (cats(e) or [None])[0]
            else:
                v = e.get(t.of)
            if v is not None:
                cands.append((e["ts_ms"], repr(v), v))
        if not cands:
            return None
        # ties (same ms) broken by the value, as documented; repr order equals JSON order for strings of one kind
        pick = min(cands) if t.kind == "first" else max(cands)
        return pick[2]
    if t.kind == "days_since":
        ts = [e["ts_ms"] for e in es if t.of == "events" or is_order(e)]
        return None if not ts else max(0, (now - max(ts)) // DAY)
    raise AssertionError(t.kind)


def traits(defs: Any, events: list[dict[str, Any]], now: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for t in defs.traits:
        if t.kind != "score":
            values[t.name] = trait_value(t, events, now, values)
    for t in defs.traits:
        if t.kind == "score":
            values[t.name] = trait_value(t, events, now, values)
    return values


def last_by_time(events: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Profile traits / consent flags: the latest value per name by event time."""
    out: dict[str, tuple[int, Any]] = {}
    for e in events:
        for k, v in (e.get(field) or {}).items():
            if k not in out or e["ts_ms"] > out[k][0]:
                out[k] = (e["ts_ms"], v)
    return {k: v for k, (_, v) in out.items()}
