"""The profile value: one person's folded state, as a compact JSON-safe dict.

Pure functions only (no Kafka, Faust or Redis): :func:`fold` applies one event, :func:`merge`
folds a whole profile into another, :func:`render` gives the user-facing shape. Every part of
the value is bounded (see :class:`Limits`) because the value is rewritten to the changelog on
every event and replayed on every recovery (notes/faust.md §2: keep profile values small).

Internal layout (short keys: the value is written once per event)::

    v    layout version               n   event count
    ids  {"TYPE:VALUE": [first, last]} (email/phone values are keyed hashes, invariant 7)
    tr   {trait: [value, ts]}          event-time last-write-wins per trait
    fs   first event time (ms)         ls  last event time (ms)
    ch   {channel: count}              ty  {event type: count}
    oc   orders counted (completed, not cancelled; one per order id)
    rv   {currency: net revenue in minor units (integer, exact)}: completed minus refunded/cancelled
    od   per order id what was seen of it, and refund/cancellation totals (streams/profiles/orders.py);
         only in values that saw an order event (a value without it is read as it is)
    fu   funnel flags reached by events: 1 visited, 2 engaged, 3 carted
    cat  {category: count}             (at most Limits.categories)
    tl   [[ts, channel, type, summary], ...] ascending event time, the last Limits.timeline
    cs   {consent flag: [bool, ts]}    event-time last-write-wins per flag
    ab   sorted ids of every profile folded into this one (merge exactly once)
    wm   {"ORIGIN/PARTITION": input offset}: dedup watermarks (see streams/profiles/stage.py)
    rc   short hashes of the message ids of the last Limits.recent_ids applied events (dedup)
    po   position (offset x POSITIONS + bundle index) of the last profile-events record written into this value (replay guard)
    so   {new profile id: [TYPE:VALUE, ...]} of each split of this profile: in-flight events carrying
         only those identifiers are forwarded there (only in split profiles; streams/profiles/refold.py)
    rf   split ids whose refolded value was folded in (refold exactly once; only in split profiles)

A tombstone is ``{"tomb": "merged", "into": ID, ...}`` or ``{"tomb": "erased", ...}``.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.profiles.orders import fold_order, merge_orders, render_orders

__all__ = [
    "Limits", "DEFAULT_LIMITS", "LAYOUT", "new_profile", "fold", "merge", "render", "is_live", "is_tomb",
    "encode", "decode", "iso", "funnel_stage", "FUNNEL", "is_tomb_bytes", "tombstone",
]

LAYOUT = 1
FUNNEL = ("none", "visited", "engaged", "carted", "purchased", "repeat_buyer")

# Segment e-commerce spec event names that mark a funnel step.
_CARTED = frozenset({"Product Added", "Cart Viewed", "Checkout Started", "Checkout Step Viewed", "Payment Info Entered"})
_ENGAGED = frozenset({"Product Viewed", "Product Clicked", "Product List Viewed", "Products Searched",
                      "Product Added to Wishlist", "Product Shared", "Promotion Clicked"})


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds that keep one profile value small (each part is capped independently)."""

    timeline: int = 50
    identifiers: int = 50
    traits: int = 50
    trait_bytes: int = 256      # a trait whose JSON is longer is not kept
    categories: int = 10
    consent: int = 20
    summary_chars: int = 80
    recent_ids: int = 16        # message-id hashes kept for dedup across origins (stage.py)
    name_chars: int = 128       # a trait whose name is longer is not kept (names are keys of the value)
    orders: int = 100           # order ids kept per profile; past it the oldest is retired (orders.py)
    max_bytes: int = 65536      # the encoded value; above it parts are trimmed in TRIM_ORDER (bounded_encode)

    def __post_init__(self) -> None:
        if min(self.timeline, self.identifiers, self.traits, self.trait_bytes, self.categories, self.consent, self.recent_ids,
               self.name_chars, self.max_bytes, self.orders) < 1:
            raise ValueError("every profile limit must be >= 1")


DEFAULT_LIMITS = Limits()


def new_profile() -> dict[str, Any]:
    """An empty live profile."""
    return {"v": LAYOUT, "ids": {}, "tr": {}, "fs": None, "ls": None, "n": 0, "ch": {}, "ty": {},
            "oc": 0, "rv": {}, "fu": 0, "cat": {}, "tl": [], "cs": {}, "ab": [], "wm": {}, "rc": []}


def is_tomb(state: dict[str, Any] | None) -> bool:
    return state is not None and "tomb" in state


def is_live(state: dict[str, Any] | None) -> bool:
    return state is not None and "tomb" not in state


def tombstone(kind: str, po: int, at: int | None, into: str | None = None) -> dict[str, Any]:
    """A merged (``into`` set) or erased tombstone; ``tomb`` is written first (see is_tomb_bytes)."""
    out: dict[str, Any] = {"tomb": kind}
    if into is not None:
        out["into"] = into
    out["at"] = at
    out["po"] = po
    return out


def is_tomb_bytes(raw: bytes) -> bool:
    """Tombstone test on the encoded value without decoding it (for counting whole tables)."""
    return raw.startswith(b'{"tomb"')


def encode(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state)


def decode(raw: bytes) -> dict[str, Any]:
    return orjson.loads(raw)


# -- folding one event ---------------------------------------------------------------------------

def fold(state: dict[str, Any], event: dict[str, Any], limits: Limits = DEFAULT_LIMITS,
         keep_identifier: Callable[[str], bool] | None = None, dropped: Counter[str] | None = None) -> dict[str, Any]:
    """Apply one event (a ``Touchpoint.to_dict()``) to a live profile; mutates and returns ``state``.

    Dedup is not done here (the stage decides whether an event is new); everything here is
    commutative except the bounded parts, so folding in any order gives the same profile
    (invariant 3) as long as no bound is hit. Traits not kept (name longer than
    ``limits.name_chars``, JSON value longer than ``limits.trait_bytes``) are counted in ``dropped``.
    """
    # Hot path (once per event): every field of ``event`` is read once into a local, and each
    # part of the profile is updated by its own step, in the order the value has always been
    # written in: the changelog bytes are a contract (recovery and the HTTP views read them).
    get = event.get
    ts = int(event["ts_ms"])
    channel = get("channel")
    etype = get("type")
    kind = etype or "unknown"
    _fold_activity(state, ts, channel, kind)
    _fold_identifiers(state["ids"], get("identifiers"), ts, limits.identifiers, keep_identifier)
    traits = get("traits")
    _fold_traits(state["tr"], traits, ts, limits, dropped)
    _fold_consent(state["cs"], get("consent"), ts, limits.consent)
    name = get("event")
    revenue = get("revenue")
    # Only completed orders count, once per order id; refunds and cancellations apart (orders.py).
    fold_order(state, event, name, ts, limits.orders, limits.name_chars)
    category = get("category")
    _fold_funnel(state, name, kind, category)
    products = get("products")
    _fold_categories(state["cat"], category, products, limits)
    line = _summary(event, etype, name, traits, products, revenue, limits.summary_chars)
    _timeline_add(state["tl"], [ts, channel or "", kind, line], limits.timeline)
    return state


def _fold_activity(state: dict[str, Any], ts: int, channel: Any, kind: str) -> None:
    """Event count, first/last seen, and the counts per channel and per event type."""
    state["n"] += 1
    first, last = state["fs"], state["ls"]
    if first is None or ts < first:  # min()/max() keep the old value on a tie: so does this
        state["fs"] = ts
    if last is None or ts > last:
        state["ls"] = ts
    counts = state["ch"]
    label = channel or "unknown"
    counts[label] = counts.get(label, 0) + 1
    counts = state["ty"]
    counts[kind] = counts.get(kind, 0) + 1


def _fold_identifiers(ids: dict[str, list[int]], identifiers: Any, ts: int, bound: int,
                      keep_identifier: Callable[[str], bool] | None) -> None:
    """Each identifier's first/last seen (the least recently seen evicted past ``bound``)."""
    for ident in identifiers or ():
        # order ids are counted as orders, not kept as identifiers: one per purchase would
        # crowd out the person's real identifiers.
        if ident.startswith("order_id:") or (keep_identifier is not None and not keep_identifier(ident)):
            continue
        seen = ids.get(ident)
        if seen is None:
            ids[ident] = [ts, ts]
        else:  # updated in place: the pair belongs to this value alone (decoded or built here)
            if ts < seen[0]:
                seen[0] = ts
            if ts > seen[1]:
                seen[1] = ts
    if len(ids) > bound:
        _evict(ids, bound, _by_last_seen)


def _fold_traits(part: dict[str, Any], traits: Any, ts: int, limits: Limits, dropped: Counter[str] | None) -> None:
    """Traits, last writer wins; a name or value over its limit is dropped and counted."""
    if traits:
        for trait, value in traits.items():
            if len(trait) > limits.name_chars:
                if dropped is not None:
                    dropped["trait_name"] += 1
            elif not _put_lww(part, trait, value, ts, limits.trait_bytes) and dropped is not None:
                dropped["trait_value"] += 1
    if len(part) > limits.traits:
        _evict(part, limits.traits, _by_last_seen)


def _fold_consent(part: dict[str, Any], consent: Any, ts: int, bound: int) -> None:
    """Consent flags, last writer wins."""
    if consent is not None:
        for flag, value in _consent_flags(consent):
            _put_lww(part, flag, value, ts, 16)
    if len(part) > bound:
        _evict(part, bound, _by_last_seen)


def _fold_funnel(state: dict[str, Any], name: Any, kind: str, category: Any) -> None:
    """The furthest funnel step the event reaches (1 visited, 2 engaged, 3 carted)."""
    if name in _CARTED:
        step = 3
    elif name in _ENGAGED or kind == "identify" or (kind in ("page", "screen") and category):
        step = 2
    else:
        step = 1
    if step > state["fu"]:
        state["fu"] = step


def _fold_categories(counts: dict[str, int], category: Any, products: Any, limits: Limits) -> None:
    """Counts per category: the event's and its products', each distinct one once per event."""
    if products:
        # Distinct categories in event order (a dict: a set's order depends on the hash seed,
        # which made the changelog bytes differ between processes for the same events).
        categories = {category: None} if category else {}
        for p in products:
            if isinstance(p, dict):
                c = p.get("category")
                if c:
                    categories[c] = None
        for c in categories:
            label = str(c)[: limits.name_chars]
            counts[label] = counts.get(label, 0) + 1
    elif category:  # the common case without products: one category, no set needed
        hash(category)  # an unhashable category fails here as it fails in the dict above
        label = str(category)[: limits.name_chars]
        counts[label] = counts.get(label, 0) + 1
    if len(counts) > limits.categories:
        _evict(counts, limits.categories, _by_count)


def summary(event: dict[str, Any], max_chars: int = 80) -> str:
    """A short human line for the timeline, e.g. ``Order Completed: 2 x masks, 25.00 CNY``."""
    get = event.get
    return _summary(event, get("type"), get("event"), get("traits"), get("products"), get("revenue"), max_chars)


def _summary(event: dict[str, Any], kind: Any, name: Any, traits: Any, products: Any, revenue: Any, max_chars: int) -> str:
    """:func:`summary` with the fields :func:`fold` has read already."""
    if kind == "identify":
        text = "identified" + (f": {', '.join(sorted(traits))}" if traits else "")
    elif kind in ("page", "screen"):
        text = f"{kind} {name or ''}".strip()
    else:
        text = name or kind or "event"
        parts: list[str] = []
        if products:
            for p in products:
                if isinstance(p, dict):
                    if len(parts) == 3:
                        break
                    parts.append(f"{p.get('quantity', 1)} x {p.get('category') or p.get('product_id') or '?'}")
        if revenue is not None:
            parts.append(f"{float(revenue):.2f} {event.get('currency') or ''}".strip())
        elif not parts and event.get("category"):
            parts.append(str(event["category"]))
        if parts:
            text = f"{text}: {', '.join(parts)}"
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


# -- merging two profiles ------------------------------------------------------------------------

def merge(into: dict[str, Any], other: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Fold the live profile ``other`` into ``into`` (mutated and returned).

    Counts add, first/last seen take min/max, traits and consent keep the later event time per
    name, timelines interleave by event time, watermarks take the max per key. The caller
    guarantees each profile is merged at most once (``ab``), so adding counts is exact.
    """
    into["n"] += other["n"]
    for end, pick in (("fs", min), ("ls", max)):
        a, b = into[end], other[end]
        into[end] = b if a is None else a if b is None else pick(a, b)
    for part in ("ch", "ty", "cat"):
        for name, count in other[part].items():
            _inc(into[part], name, count)
    if len(into["cat"]) > limits.categories:
        _evict(into["cat"], limits.categories, _by_count)
    merge_orders(into, other, limits.orders)  # oc, rv and od: one order per order id
    into["fu"] = max(into["fu"], other["fu"])

    ids = into["ids"]
    for ident, (first, last) in other["ids"].items():
        seen = ids.get(ident)
        ids[ident] = [first, last] if seen is None else [min(seen[0], first), max(seen[1], last)]
    if len(ids) > limits.identifiers:
        _evict(ids, limits.identifiers, _by_last_seen)
    for part, bound in (("tr", limits.traits), ("cs", limits.consent)):
        for name, (value, ts) in other[part].items():
            _put_lww(into[part], name, value, ts, None)
        if len(into[part]) > bound:
            _evict(into[part], bound, _by_last_seen)

    tl = list(heapq.merge(into["tl"], other["tl"]))
    into["tl"] = tl[-limits.timeline:]
    into["ab"] = sorted(set(into["ab"]) | set(other["ab"]))
    wm = into["wm"]
    for k, off in other["wm"].items():
        if wm.get(k, -1) < off:
            wm[k] = off
    recent = other.get("rc", []) + [h for h in into.get("rc", []) if h not in set(other.get("rc", []))]
    into["rc"] = recent[-limits.recent_ids:]
    return into


# -- rendering -----------------------------------------------------------------------------------

def iso(ms: int | None) -> str | None:
    """UTC ISO 8601 with milliseconds, e.g. ``2026-01-01T00:00:00.000Z``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def funnel_stage(state: dict[str, Any]) -> str:
    if state["oc"] >= 2:
        return "repeat_buyer"
    if state["oc"] >= 1:
        return "purchased"
    return FUNNEL[state["fu"]]


def render(profile_id: str, state: dict[str, Any], top_categories: int = 5) -> dict[str, Any]:
    """The user-facing profile (``touchpoint profile get``, ``GET /profiles/{id}``)."""
    out = {"profile_id": profile_id, **profile_fields(state, iso, top_categories)}
    out["timeline"] = [{"time": iso(ts), "channel": ch or None, "type": kind, "summary": text}
                       for ts, ch, kind, text in reversed(state["tl"])]
    out["merged_from"] = out.pop("merged_from")  # keep the documented key order
    return out


def profile_fields(state: dict[str, Any], when: Callable[[Any], Any] = iso, top_categories: int = 5) -> dict[str, Any]:
    """Every field of the rendered profile but its id and timeline; ``when`` formats a time (the
    public profile-updates stream passes a cached one)."""
    cats = sorted(state["cat"].items(), key=_by_count_desc)[:top_categories]
    idents = []
    for f, (a, b) in sorted(state["ids"].items(), key=_by_first_seen):
        kind, _, value = f.partition(":")
        idents.append({"type": kind, "value": value, "first_seen": when(a), "last_seen": when(b)})
    return {
        "identifiers": idents,
        "traits": {name: value for name, (value, _) in sorted(state["tr"].items())},
        "event_count": state["n"],
        "first_seen": when(state["fs"]),
        "last_seen": when(state["ls"]),
        "channels": dict(sorted(state["ch"].items())),
        "event_types": dict(sorted(state["ty"].items())),
        "orders": render_orders(state),
        "funnel_stage": funnel_stage(state),
        "top_categories": [{"category": c, "count": n} for c, n in cats],
        "consent": {flag: value for flag, (value, _) in sorted(state["cs"].items())},
        "merged_from": list(state["ab"]),
    }


def _by_count_desc(kv: tuple[str, int]) -> tuple[int, str]:
    return -kv[1], kv[0]


def _by_first_seen(kv: tuple[str, list[int]]) -> tuple[int, str]:
    return kv[1][0], kv[0]


# -- helpers -------------------------------------------------------------------------------------

def _inc(counts: dict[str, int], name: str, by: int = 1) -> None:
    counts[name] = counts.get(name, 0) + by


def _by_last_seen(kv: tuple[str, list[Any]]) -> tuple[Any, str]:
    """Eviction order of ``[first, last]`` / ``[value, ts]`` entries: oldest second item first."""
    return kv[1][1], kv[0]


def _by_count(kv: tuple[str, int]) -> tuple[int, str]:
    return kv[1], kv[0]


def _evict(d: dict[str, Any], keep: int, order: Callable[[tuple[str, Any]], Any]) -> None:
    """Drop the smallest entries under ``order`` until ``keep`` remain (deterministic ties)."""
    for name, _ in sorted(d.items(), key=order)[: len(d) - keep]:
        del d[name]


def _lww_key(value: Any, ts: int) -> tuple[int, bytes]:
    # Equal event times are broken by the value's JSON so every fold/merge order agrees.
    return ts, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _put_lww(d: dict[str, list[Any]], name: str, value: Any, ts: int, max_bytes: int | None) -> bool:
    """Keep ``value`` for ``name`` unless an event at least as late already set it (event time, not
    arrival). False when the value is too large to be kept at all."""
    if max_bytes is not None and len(orjson.dumps(value)) > max_bytes:
        return False
    old = d.get(name)
    # (ts, JSON) compared as _lww_key does, the JSON only on a tie of event times (rare): the two
    # sorted encodings cost ~1 us per trait update, the comparison of times 0.14 us.
    if old is None or ts > old[1] or (ts == old[1] and _lww_key(value, ts) > _lww_key(old[0], old[1])):
        d[name] = [value, ts]
    return True


def _consent_flags(consent: Any) -> Iterable[tuple[str, bool]]:
    """Boolean flags of Segment's ``context.consent`` (``categoryPreferences`` or flat)."""
    if not isinstance(consent, dict):
        return ()
    prefs = consent.get("categoryPreferences", consent)
    if not isinstance(prefs, dict):
        return ()
    return [(str(k)[:64], v) for k, v in prefs.items() if isinstance(v, bool)]


def _timeline_add(tl: list[list[Any]], entry: list[Any], size: int) -> None:
    """Insert by event time; keep the ``size`` latest (a late old event may not enter)."""
    if len(tl) >= size and entry <= tl[0]:
        return
    if not tl or entry >= tl[-1]:
        tl.append(entry)  # the usual case, events in time order: where insort would put it
    else:
        bisect.insort(tl, entry)
    if len(tl) > size:
        del tl[: len(tl) - size]
