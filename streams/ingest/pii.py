"""Email and phone normalisation and keyed hashing (invariant 7: no raw PII downstream)."""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers

__all__ = ["PiiHasher", "normalize_email", "normalize_phone"]


def normalize_email(raw: str) -> str | None:
    """Trim and lower-case; None when it is not shaped like an address.

    >>> normalize_email("  Ann.Lee@Example.COM ")
    'ann.lee@example.com'
    >>> normalize_email("not-an-email") is None
    True
    """
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or " " in value or domain.startswith(".") or domain.endswith("."):
        return None
    return value


def normalize_phone(raw: str | int, default_region: str) -> str | None:
    """E.164 (``+8613812345678``), or None when it is not a possible number.

    >>> normalize_phone("138 1234 5678", "CN")
    '+8613812345678'
    >>> normalize_phone("+1 (415) 555-2671", "CN")
    '+14155552671'
    """
    try:
        number = phonenumbers.parse(str(raw), default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PiiHasher:
    """HMAC-SHA256 of normalised values under a secret key.

    A plain SHA-256 of an email can be reversed with a dictionary; a keyed hash cannot without
    the key. The type is part of the message so equal strings of different types differ.
    128 bits (32 hex digits) are kept: collisions stay negligible and Redis keys stay short.
    """

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes) -> None:
        self._key = key.encode() if isinstance(key, str) else key

    def hash(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]
