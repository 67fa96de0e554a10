"""Turn a validated Segment-Spec event into a :class:`Touchpoint`.

Timestamps follow Segment's rule (skew correction when ``sentAt`` is present), identifiers are
collected from every documented place, emails and phones are normalised and keyed-hashed, and
PII fields are removed from the traits that travel downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Normalises validated events; holds only configuration."""

    hasher: PiiHasher
    default_phone_region: str = "CN"
    max_skew_ms: int = 86_400_000

    def normalize(self, event: dict[str, Any], received_at_ms: int) -> Touchpoint | Rejected:
        try:
            ts_ms = event_time_ms(event, received_at_ms, self.max_skew_ms)
        except ValueError as exc:
            return Rejected(Reason.SCHEMA_VIOLATION, f"bad timestamp: {exc}"[:200])
        context = event.get("context") or {}
        properties = event.get("properties") or {}
        traits = _clean_traits(event.get("traits"))
        context_traits = context.get("traits") or {}

        identifiers = self._identifiers(event, context, context_traits)
        if not identifiers:
            return Rejected(Reason.NO_IDENTIFIER, "no usable identifier (userId, anonymousId, context.device.id, email, phone or context.externalIds)")

        call_type = event["type"]
        store = (context.get("store") or {}).get("id", properties.get("store_id"))
        region = properties.get("region") or (context.get("store") or {}).get("region") or (context.get("location") or {}).get("region")
        products = [_product(p) for p in properties.get("products") or ()]
        order_id = properties.get("order_id")
        revenue = properties.get("revenue", properties.get("total"))
        currency = properties.get("currency")
        return Touchpoint(
            message_id=event["messageId"],
            type=call_type,
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
        found: list[Identifier] = []

        def add(kind: str, raw: Any) -> None:
            if raw is None or raw == "":
                return
            value: str | None
            if kind == "email":
                value = normalize_email(str(raw))
            elif kind == "phone":
                value = normalize_phone(raw, self.default_phone_region)
            else:
                value = str(raw).strip()
            if not value:
                return  # an unusable email/phone is dropped as an identifier, never stored raw
            if kind in PII_TYPES:
                value = self.hasher.hash(kind, value)
            ident = (kind, value)
            if ident not in found:
                found.append(ident)

        add("user_id", event.get("userId"))
        if event["type"] == "alias":
            # alias links the previous id (anonymous or user) to the new userId
            add("anonymous_id", event.get("previousId"))
        add("anonymous_id", event.get("anonymousId"))
        add("device_id", (context.get("device") or {}).get("id"))
        for source in (event.get("traits") or {}, context_traits):
            add("email", source.get("email"))
            add("phone", source.get("phone"))
        for ext in context.get("externalIds") or ():
            add(ext["type"], ext["id"])
        order_id = (event.get("properties") or {}).get("order_id")
        if order_id is not None:
            add("order_id", order_id)
        return tuple(found)


def _clean_traits(traits: dict[str, Any] | None) -> dict[str, Any]:
    if not traits:
        return {}
    return {k: v for k, v in traits.items() if k not in _PII_TRAIT_KEYS}


def _product(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("product_id", "sku", "category", "price", "quantity"):
        if key in p:
            out[key] = str(p[key]) if key == "product_id" else p[key]
    return out
