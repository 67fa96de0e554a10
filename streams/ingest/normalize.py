"""Turn a validated Segment-Spec event into a :class:`Touchpoint`.

Timestamps follow Segment's rule (skew correction when ``sentAt`` is present), identifiers are
collected from every documented place, emails and phones are normalised and keyed-hashed, and
PII fields are removed from the traits that travel downstream.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.events.model import PII_TYPES, Identifier, Touchpoint
from streams.events.reasons import Reason, Rejected
from streams.identity.rules import REFUSED_MARK, IdentityRules
from streams.ingest.pii import PiiHasher, check_phone, looks_like_email, looks_like_phone, normalize_email, redact_text

__all__ = ["Normalizer", "event_time_ms", "pii_key_kind"]

# Trait names that hold an email or a phone, compared without case, '_', '-', '.' or spaces.
_EMAIL_KEYS = frozenset({"email", "emailaddress", "mail", "email1", "primaryemail", "contactemail", "useremail"})
_PHONE_KEYS = frozenset({"phone", "phonenumber", "mobile", "mobilephone", "mobilenumber", "tel", "telephone", "cell",
                         "cellphone", "contactnumber", "contactphone", "phone1", "primaryphone", "userphone"})
_KEY_JUNK = str.maketrans("", "", "_-. ")
_PHONE_SHAPE = re.compile(r"\+?[\d\s().\-]{7,24}")  # what a phone number may look like (then checked)
_DIGIT_RUN = re.compile(r"\d{3}")                  # every way of writing a phone has 3 digits in a row
_MAX_DEPTH = 8  # nesting walked for PII (deeper values are dropped, never passed on unchecked)


def pii_key_kind(key: str) -> str | None:
    """"email" or "phone" when a trait name holds one (``Email``, ``mobile``, ``phoneNumber``...)."""
    k = key.lower().translate(_KEY_JUNK)
    return "email" if k in _EMAIL_KEYS else "phone" if k in _PHONE_KEYS else None


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
    rules: IdentityRules = field(default_factory=IdentityRules)
    # (kind, raw text) -> keyed hash of the normalised value, or None when it is unusable
    _pii_memo: dict[tuple[str, str], str | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def normalize(self, event: dict[str, Any], received_at_ms: int) -> Touchpoint | Rejected:
        try:
            ts_ms = event_time_ms(event, received_at_ms, self.max_skew_ms)
        except ValueError as exc:
            return Rejected(Reason.SCHEMA_VIOLATION, f"bad timestamp: {exc}"[:200])
        context = event.get("context") or {}
        properties = event.get("properties") or {}
        found: list[tuple[str, Any]] = []
        traits = self._clean_traits(event.get("traits"), found)
        context_found: list[tuple[str, Any]] = []
        self._clean_traits(context.get("traits"), context_found)

        # per source emails before phones, as they always came
        pii = sorted(found, key=lambda c: c[0] != "email") + sorted(context_found, key=lambda c: c[0] != "email")
        identifiers = self._identifiers(event, context, pii)
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

    def _identifiers(self, event: dict[str, Any], context: dict[str, Any], trait_pii: list[tuple[str, Any]]) -> tuple[Identifier, ...]:
        # Candidates in priority order; the first occurrence of each (kind, value) is kept.
        candidates: list[tuple[str, Any]] = [("user_id", event.get("userId"))]
        if event["type"] == "alias":
            # alias links the previous id (anonymous or user) to the new userId
            candidates.append(("anonymous_id", event.get("previousId")))
        candidates.append(("anonymous_id", event.get("anonymousId")))
        candidates.append(("device_id", (context.get("device") or {}).get("id")))
        candidates.extend(trait_pii)  # email/phone traits under any of their names, nested too
        for ext in context.get("externalIds") or ():
            kind = ext["type"]
            if kind == "wechat_openid":  # an openid is per app: scope it by the app id (collection)
                app = ext.get("collection") or ext.get("appId") or ext.get("app_id")
                candidates.append((kind, ext["id"] if not app else f"{str(app).strip()}/{str(ext['id']).strip()}"))
            else:
                candidates.append((kind, ext["id"]))
        candidates.append(("order_id", (event.get("properties") or {}).get("order_id")))

        found: dict[Identifier, None] = {}  # an insertion-ordered set
        for kind, raw in candidates:
            if raw is None or raw == "":
                continue
            # emails and phones only as keyed hashes (refused ones marked), other values hashed
            # too when they turn out to be an email or a phone number (invariant 7)
            if kind in PII_TYPES:
                value = self._pii(kind, raw)
            else:
                value = str(raw).strip()
                if "@" in value or _PHONE_SHAPE.fullmatch(value):  # may be an email or a phone: hashed
                    value = self._pii(kind, value)
            if value:
                found[(kind, value)] = None
        return tuple(found)

    def _pii(self, kind: str, raw: Any) -> str | None:
        """The stored value of one identifier (memoised): email/phone keyed-hashed after the raw
        placeholder and validity rules (a refused one as ``!<reason>:<hash>``); another type's
        value as given, or keyed-hashed (``h:<hash>``) when it is shaped like an email or phone."""
        key = (kind, str(raw))
        memo = self._pii_memo
        stored = memo.get(key, _MISSING)
        if stored is _MISSING:
            stored = stored_value(kind, key[1], self.hasher, self.rules, self.default_phone_region)
            if len(memo) >= _PII_MEMO_MAX:
                memo.clear()  # cheaper than LRU bookkeeping; it refills within seconds
            memo[key] = stored
        return stored  # type: ignore[return-value]

    def _clean_traits(self, traits: Any, found: list[tuple[str, Any]]) -> dict[str, Any]:
        """Traits without PII: email/phone fields (any spelling, nested) are taken out as
        identifier candidates into ``found``; other values shaped like an email or a phone are
        redacted."""
        if not isinstance(traits, dict) or not traits:
            return {}
        out = self._scrub(traits, found, 0)
        return out if isinstance(out, dict) else {}

    def _scrub(self, value: Any, found: list[tuple[str, Any]], depth: int) -> Any:
        if isinstance(value, dict):
            if depth >= _MAX_DEPTH:
                return None
            out: dict[str, Any] = {}
            for k, v in value.items():
                kind = pii_key_kind(k) if isinstance(k, str) else None
                if kind is not None:
                    if isinstance(v, (str, int)) and not isinstance(v, bool):
                        found.append((kind, v))
                    continue
                out[k] = self._scrub(v, found, depth + 1)
            return out
        if isinstance(value, list):
            return [self._scrub(v, found, depth + 1) for v in value] if depth < _MAX_DEPTH else None
        if isinstance(value, str):
            if "@" not in value and not _DIGIT_RUN.search(value):
                return value  # most trait values: no address, no run of digits
            if looks_like_email(value):
                return "[redacted email]"
            if looks_like_phone(value, self.default_phone_region):
                return "[redacted phone]"
            return redact_text(value, self.default_phone_region)
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 1_000_000:
            if looks_like_phone(str(value), self.default_phone_region):
                return "[redacted phone]"
        return value


def stored_value(kind: str, raw: str, hasher: PiiHasher, rules: IdentityRules, region: str) -> str | None:
    """How an identifier value is stored (see :meth:`Normalizer._pii`); None when it is empty."""
    if kind in PII_TYPES:
        if kind == "email":
            value = normalize_email(raw)
            reason = None if value else "invalid_email"
            value = value or unicodedata.normalize("NFKC", raw).strip().lower()
        else:
            value, reason = check_phone(raw, region, rules.refused_phone_types, rules.phone_require_valid)
        if not value:
            return None
        reason = reason or rules.refusal((kind, value))
        digest = hasher.hash(kind, value)
        return f"{REFUSED_MARK}{reason}:{digest}" if reason else digest
    text = raw.strip()
    if not text:
        return None
    shaped = looks_like_email(text) or looks_like_phone(text, region)
    return "h:" + hasher.hash(kind, shaped) if shaped else text


def _product(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "product_id" in p:
        out["product_id"] = str(p["product_id"])
    for key in ("sku", "category", "price", "quantity"):
        if key in p:
            out[key] = p[key]
    return out
