"""The normalised touchpoint record that ingest emits to the downstream stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Touchpoint", "Identifier", "format_identifier", "parse_identifier", "IDENTIFIER_TYPES", "PII_TYPES", "dedup_id"]

Identifier = tuple[str, str]

IDENTIFIER_TYPES = (
    "user_id", "member_id", "crm_id", "email", "phone", "wechat_unionid", "wechat_openid",
    "pos_card_id", "device_id", "anonymous_id", "order_id",
)
# Values of these types are stored only as keyed hashes (invariant 7).
PII_TYPES = frozenset({"email", "phone"})


def dedup_id(message_id: str, scope: str | None) -> str:
    """The id messageId dedup compares: ``SCOPE/messageId`` when the event names its source
    (``sourceId``; the collector sets it from the write key), the bare messageId otherwise, so
    dedup keys of unscoped events keep the layout they always had.

    >>> dedup_id("m1", "wk-0a1b2c3d4e5f6a7b"), dedup_id("m1", None)
    ('wk-0a1b2c3d4e5f6a7b/m1', 'm1')
    """
    return f"{scope}/{message_id}" if scope else message_id


def format_identifier(ident: Identifier) -> str:
    """``TYPE:VALUE``, the way people read and type identifiers."""
    return f"{ident[0]}:{ident[1]}"


def parse_identifier(text: str) -> Identifier:
    """Parse ``TYPE:VALUE``; raise ValueError with a message saying what is wrong.

    >>> parse_identifier("user_id:42")
    ('user_id', '42')
    """
    kind, sep, value = text.strip().partition(":")
    if not sep or not value:
        raise ValueError(f"{text!r}: expected TYPE:VALUE, e.g. user_id:42")
    if kind not in IDENTIFIER_TYPES:
        raise ValueError(f"{text!r}: unknown identifier type {kind!r}; one of {', '.join(IDENTIFIER_TYPES)}")
    return kind, value


@dataclass(slots=True)
class Touchpoint:
    """One validated, normalised event. Email and phone values are already keyed hashes."""

    message_id: str
    type: str
    ts_ms: int                      # event time, skew-corrected (Segment's rule)
    received_at_ms: int             # stamped by us
    identifiers: tuple[Identifier, ...]
    channel: str | None = None
    event: str | None = None        # track event name, or page/screen name
    category: str | None = None     # page/screen category or properties.category
    region: str | None = None
    store: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    products: list[dict[str, Any]] = field(default_factory=list)
    order_id: str | None = None
    revenue: float | None = None
    currency: str | None = None
    consent: dict[str, Any] | None = None
    profile_id: str | None = None   # set by identity resolution
    source: str | None = None       # topic/partition/offset of the input record
    scope: str | None = None        # the event's sourceId: messageId dedup is per scope (dedup_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id, "type": self.type, "ts_ms": self.ts_ms,
            "received_at_ms": self.received_at_ms,
            "identifiers": [f"{i[0]}:{i[1]}" for i in self.identifiers],  # format_identifier, inlined
        }
        # Optional fields only when set, in this order (written out: a getattr loop costs ~2x).
        if self.channel is not None:
            out["channel"] = self.channel
        if self.event is not None:
            out["event"] = self.event
        if self.category is not None:
            out["category"] = self.category
        if self.region is not None:
            out["region"] = self.region
        if self.store is not None:
            out["store"] = self.store
        if self.order_id is not None:
            out["order_id"] = self.order_id
        if self.revenue is not None:
            out["revenue"] = self.revenue
        if self.currency is not None:
            out["currency"] = self.currency
        if self.consent is not None:
            out["consent"] = self.consent
        if self.profile_id is not None:
            out["profile_id"] = self.profile_id
        if self.source is not None:
            out["source"] = self.source
        if self.scope is not None:
            out["scope"] = self.scope
        if self.traits:
            out["traits"] = self.traits
        if self.products:
            out["products"] = self.products
        return out

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Touchpoint:
        idents = tuple(tuple(s.split(":", 1)) for s in d["identifiers"])
        return cls(
            message_id=d["message_id"], type=d["type"], ts_ms=d["ts_ms"],
            received_at_ms=d["received_at_ms"], identifiers=idents,
            channel=d.get("channel"), event=d.get("event"), category=d.get("category"),
            region=d.get("region"), store=d.get("store"), traits=d.get("traits") or {},
            products=d.get("products") or [], order_id=d.get("order_id"), revenue=d.get("revenue"),
            currency=d.get("currency"), consent=d.get("consent"), profile_id=d.get("profile_id"),
            source=d.get("source"), scope=d.get("scope"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Touchpoint:
        return cls.from_dict(orjson.loads(raw))
