"""Turn a validated Segment-Spec event into a :class:`Touchpoint`.

Timestamps follow Segment's rule (skew correction when ``sentAt`` is present), identifiers are
collected from every documented place, emails and phones are normalised and keyed-hashed, and
PII fields are removed from the traits that travel downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.events.model import PII_TYPES, Identifier, Touchpoint
from streams.events.reasons import Reason, Rejected
from streams.ingest.pii import PiiHasher, normalize_email, normalize_phone

__all__ = ["Normalizer", "event_time_ms"]

_PII_TRAIT_KEYS = ("email", "phone")


def _parse_ts_ms(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:  # Segment timestamps are UTC when no offset is written
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def event_time_ms(event: dict[str, Any], received_at_ms: int, max_skew_ms: int) -> int:
    """Event time per Segment: ``receivedAt - (sentAt - timestamp)`` when sentAt is present.

    The client's clock may be wrong, but the *difference* between its two stamps is right, so
    it is applied to our own receive time. Without sentAt, the client timestamp is used; without
    any timestamp, our receive time.

    >>> event_time_ms({"timestamp": "2024-01-01T00:00:00Z", "sentAt": "2024-01-01T00:00:10Z"}, 1_000_000_000_000, 86_400_000)
    999999990000
    """
    stamp = event.get("timestamp") or event.get("originalTimestamp")
    if stamp is None:
        return received_at_ms
    ts = _parse_ts_ms(stamp)
    sent = event.get("sentAt")
    if sent is not None:
        offset = _parse_ts_ms(sent) - ts
        if 0 <= offset <= max_skew_ms:
            return received_at_ms - offset
    return ts


# Keyed hashes of recently seen emails and phones (see Normalizer._pii). People send many events,
# so most lookups hit, and a miss costs ~15 us for a phone (phonenumbers) and ~1.5 us for an
# email (HMAC). At ~250 bytes an entry the memo stays under ~4 MB; it lives only in the worker.
_PII_MEMO_MAX = 16_384
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Normalises validated events; holds configuration and a bounded memo of hashed PII."""

    hasher: PiiHasher
    default_phone_region: str = "CN"
    max_skew_ms: int = 86_400_000
    # (kind, raw text) -> keyed hash of the normalised value, or None when it is unusable
    _pii_memo: dict[tuple[str, str], str | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def normalize(self, event: dict[str, Any], received_at_ms: int) -> Touchpoint | Rejected:
        try:
            ts_ms = event_time_ms(event, received_at_ms, self.max_skew_ms)
        except ValueError as exc:
            return Rejected(Reason.SCHEMA_VIOLATION, f"bad timestamp: {exc}"[:200])
        context = event.get("context") or {}
        properties = event.get("properties") or {}
        traits = _clean_traits(event.get("traits"))

        identifiers = self._identifiers(event, context, context.get("traits") or {})
        if not identifiers:
            return Rejected(Reason.NO_IDENTIFIER, "no usable identifier (userId, anonymousId, context.device.id, email, phone or context.externalIds)")

        context_store = context.get("store") or {}
        store = context_store.get("id", properties.get("store_id"))
        region = properties.get("region") or context_store.get("region") or (context.get("location") or {}).get("region")
        products = [_product(p) for p in properties.get("products") or ()]
        order_id = properties.get("order_id")
        revenue = properties.get("revenue", properties.get("total"))
        currency = properties.get("currency")
        return Touchpoint(
            message_id=event["messageId"],
            type=event["type"],
            ts_ms=ts_ms,
            received_at_ms=received_at_ms,
            identifiers=identifiers,
            channel=event.get("channel") or context.get("channel"),
            event=event.get("event") or event.get("name"),
            category=event.get("category") or properties.get("category"),
            region=region,
            store=None if store is None else str(store),
            traits=traits,
            products=products,
            order_id=None if order_id is None else str(order_id),
            revenue=None if revenue is None else float(revenue),
            currency=None if currency is None else currency.upper(),
            consent=context.get("consent"),
        )

    def _identifiers(self, event: dict[str, Any], context: dict[str, Any], context_traits: dict[str, Any]) -> tuple[Identifier, ...]:
        # Candidates in priority order; the first occurrence of each (kind, value) is kept.
        candidates: list[tuple[str, Any]] = [("user_id", event.get("userId"))]
        if event["type"] == "alias":
            # alias links the previous id (anonymous or user) to the new userId
            candidates.append(("anonymous_id", event.get("previousId")))
        candidates.append(("anonymous_id", event.get("anonymousId")))
        candidates.append(("device_id", (context.get("device") or {}).get("id")))
        for source in (event.get("traits") or {}, context_traits):
            candidates.append(("email", source.get("email")))
            candidates.append(("phone", source.get("phone")))
        for ext in context.get("externalIds") or ():
            candidates.append((ext["type"], ext["id"]))
        candidates.append(("order_id", (event.get("properties") or {}).get("order_id")))

        found: dict[Identifier, None] = {}  # an insertion-ordered set
        for kind, raw in candidates:
            if raw is None or raw == "":
                continue
            # an unusable email/phone is dropped as an identifier, never stored raw
            value = self._pii(kind, raw) if kind in PII_TYPES else str(raw).strip()
            if value:
                found[(kind, value)] = None
        return tuple(found)

    def _pii(self, kind: str, raw: Any) -> str | None:
        """Keyed hash of a normalised email or phone, or None when it is not usable (memoised)."""
        key = (kind, str(raw))
        memo = self._pii_memo
        stored = memo.get(key, _MISSING)
        if stored is _MISSING:
            text = key[1]
            value = normalize_email(text) if kind == "email" else normalize_phone(text, self.default_phone_region)
            stored = self.hasher.hash(kind, value) if value else None
            if len(memo) >= _PII_MEMO_MAX:
                memo.clear()  # cheaper than LRU bookkeeping; it refills within seconds
            memo[key] = stored
        return stored  # type: ignore[return-value]


def _clean_traits(traits: dict[str, Any] | None) -> dict[str, Any]:
    if not traits:
        return {}
    return {k: v for k, v in traits.items() if k not in _PII_TRAIT_KEYS}


def _product(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "product_id" in p:
        out["product_id"] = str(p["product_id"])
    for key in ("sku", "category", "price", "quantity"):
        if key in p:
            out[key] = p[key]
    return out
