"""Turning a ``TYPE:VALUE`` typed by a person into the identifier as stored (normalised, PII hashed)."""

from __future__ import annotations

from streams.events.model import PII_TYPES, Identifier, parse_identifier
from streams.ingest.pii import PiiHasher, normalize_email, normalize_phone

__all__ = ["stored_identifier"]


def stored_identifier(text: str, hasher: PiiHasher, default_phone_region: str = "CN") -> Identifier:
    """Parse and normalise like ingest does; raise ValueError saying what is wrong.

    >>> stored_identifier("user_id:42", PiiHasher("k"))
    ('user_id', '42')
    >>> stored_identifier("email: Ann@X.com ", PiiHasher("k")) == ("email", PiiHasher("k").hash("email", "ann@x.com"))
    True
    """
    kind, raw = parse_identifier(text)
    if kind not in PII_TYPES:
        return kind, raw.strip()
    value = normalize_email(raw) if kind == "email" else normalize_phone(raw, default_phone_region)
    if value is None:
        raise ValueError(f"{text!r}: not a usable {kind}")
    return kind, hasher.hash(kind, value)
