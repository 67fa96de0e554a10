"""Email and phone normalisation, detection by value, and keyed hashing (invariant 7: no raw PII downstream)."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

import phonenumbers

__all__ = ["PiiHasher", "normalize_email", "normalize_phone", "check_phone", "looks_like_email", "looks_like_phone",
           "redact_text"]

# Invisible characters people paste along with an address (zero-width space/joiners, word joiner,
# BOM, soft hyphen, bidi marks): the same person must be one identifier, found by erasure.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u202a\u202b\u202c\u202d\u202e"))
_PHONE_CHARS = re.compile(r"\+?[\d\s().\-]{7,24}")
_NUMBER_TYPES = {getattr(phonenumbers.PhoneNumberType, n.upper()): n for n in (
    "fixed_line", "mobile", "fixed_line_or_mobile", "toll_free", "premium_rate", "shared_cost", "voip",
    "personal_number", "pager", "uan", "voicemail", "unknown")}


def normalize_email(raw: str) -> str | None:
    """NFKC, invisible characters removed, trimmed and lower-cased; None when it is not shaped like an address.

    >>> normalize_email("  Ann.Lee@Example.COM ")
    'ann.lee@example.com'
    >>> normalize_email("ann\\u200b@ｅxample.com")
    'ann@example.com'
    >>> normalize_email("not-an-email") is None
    True
    """
    value = unicodedata.normalize("NFKC", raw).translate(_INVISIBLE).strip().lower()
    local, at, domain = value.partition("@")
    if (not at or not local or "." not in domain or "@" in domain or any(c.isspace() for c in value)
            or domain.startswith(".") or domain.endswith(".") or ".." in domain):
        return None
    return value


def normalize_phone(raw: str | int, default_region: str) -> str | None:
    """E.164 (``+8613812345678``), or None when it is not a possible number.

    >>> normalize_phone("138 1234 5678", "CN")
    '+8613812345678'
    >>> normalize_phone("+1 (415) 555-2671", "CN")
    '+14155552671'
    """
    number = _parse_phone(raw, default_region)
    if number is None or not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse_phone(raw: str | int, region: str) -> phonenumbers.PhoneNumber | None:
    text = unicodedata.normalize("NFKC", str(raw)).translate(_INVISIBLE)
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def check_phone(raw: str | int, default_region: str, refused_types: tuple[str, ...] = (),
                require_valid: bool = True) -> tuple[str, str | None]:
    """``(value, reason)``: the E.164 form and None when the number may identify a person; else
    the best canonical form to hash for the audit trail and why it is refused
    (``invalid_phone``: not a valid number, e.g. ``12345`` or ``95588``; ``service_phone``: a
    toll-free, shared-cost or other service number).

    >>> check_phone("12345", "CN")
    ('+8612345', 'invalid_phone')
    >>> check_phone("400 812 3123", "CN", ("shared_cost",))
    ('+864008123123', 'service_phone')
    """
    number = _parse_phone(raw, default_region)
    digits = "".join(c for c in str(raw) if c.isdigit() or c == "+")
    if number is None or not phonenumbers.is_possible_number(number):
        return digits, "invalid_phone"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if require_valid and not phonenumbers.is_valid_number(number):
        return e164, "invalid_phone"
    if len(set(str(number.national_number))) == 1:  # one digit repeated: 000 0000 0000, 1111111
        return e164, "blocked_pattern"
    if refused_types and _NUMBER_TYPES.get(phonenumbers.number_type(number)) in refused_types:
        return e164, "service_phone"
    return e164, None


def looks_like_email(value: str) -> str | None:
    """The normalised address when ``value`` is shaped like an email address, else None."""
    return normalize_email(value) if "@" in value else None


def looks_like_phone(value: str | int, default_region: str) -> str | None:
    """The E.164 form when ``value`` is written like a phone number (digits, spaces, + - ( ) .)
    and is a valid number; else None. Identifiers such as ``POS00000001`` or UUIDs never match.

    >>> looks_like_phone("138 0013 8000", "CN")
    '+8613800138000'
    >>> looks_like_phone("dev-1234567", "CN") is None
    True
    """
    text = str(value)
    if not _PHONE_CHARS.fullmatch(text.strip()):
        return None
    number = _parse_phone(text, default_region)
    if number is None or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL_IN_TEXT = re.compile(r"[^\s@<>()\[\]{},;:\"']+@[^\s@<>()\[\]{},;:\"']+\.[^\s@<>()\[\]{},;:\"'.]+")
_PHONE_IN_TEXT = re.compile(r"(?<![\w+])\+?\d[\d\s().\-]{5,22}\d(?!\w)")


def redact_text(text: str, default_region: str) -> str:
    """``text`` with every email address and valid phone number inside replaced by a marker.

    >>> redact_text("call 139-1234-5672, or ann@x.com; order 42", "CN")
    'call [redacted phone], or [redacted email]; order 42'
    """
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub(lambda m: "[redacted email]" if normalize_email(m.group()) else m.group(), text)
    if _PHONE_IN_TEXT.search(text):
        text = _PHONE_IN_TEXT.sub(lambda m: "[redacted phone]" if looks_like_phone(m.group(), default_region) else m.group(), text)
    return text


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
