"""Turning a ``TYPE:VALUE`` typed by a person into the identifier as stored (normalised, PII hashed)."""

from __future__ import annotations

from streams.events.model import Identifier, parse_identifier
from streams.identity.rules import REFUSED_MARK, IdentityRules
from streams.ingest.pii import PiiHasher

__all__ = ["stored_identifier", "explained_identifier", "legacy_forms", "RefusedIdentifier"]


class RefusedIdentifier(ValueError):
    """The value is one ingest refuses (a placeholder, an invalid or service phone...): ``reason`` says why."""

    def __init__(self, message: str, kind: str, reason: str, stored: str) -> None:
        super().__init__(message)
        self.kind, self.reason, self.stored = kind, reason, stored


def stored_identifier(text: str, hasher: PiiHasher, default_phone_region: str = "CN",
                      rules: IdentityRules | None = None) -> Identifier:
    """Parse and normalise like ingest does; raise ValueError saying what is wrong.

    >>> stored_identifier("user_id:42", PiiHasher("k"))
    ('user_id', '42')
    >>> stored_identifier("email: Ann@X.com ", PiiHasher("k")) == ("email", PiiHasher("k").hash("email", "ann@x.com"))
    True
    >>> stored_identifier("user_id:Ann@X.com", PiiHasher("k")) == ("user_id", "h:" + PiiHasher("k").hash("user_id", "ann@x.com"))
    True
    """
    from streams.ingest.normalize import stored_value

    kind, raw = parse_identifier(text)
    rules = rules or IdentityRules()
    value = stored_value(kind, raw, hasher, rules, default_phone_region)
    if not value:
        raise ValueError(f"{text!r}: not a usable {kind}")
    if kind in ("email", "phone") and value.startswith(REFUSED_MARK):
        reason, _, digest = value[1:].partition(":")
        raise RefusedIdentifier(f"{text!r}: not a usable {kind} ({reason})", kind, reason, digest)
    return kind, value


def explained_identifier(text: str, hasher: PiiHasher, default_phone_region: str = "CN",
                         rules: IdentityRules | None = None) -> Identifier:
    """Like :func:`stored_identifier`, but a value ingest refuses comes back in its refused form
    (``!<reason>:<hash>``), so ``why`` can name the rule instead of failing."""
    try:
        return stored_identifier(text, hasher, default_phone_region, rules)
    except RefusedIdentifier as exc:
        return exc.kind, f"{REFUSED_MARK}{exc.reason}:{exc.stored}"


def legacy_forms(text: str, hasher: PiiHasher, default_phone_region: str = "CN") -> list[Identifier]:
    """How versions before the raw-value rules stored this identifier, where that differs from
    today's form: a value that is an email or a phone kept raw in another type, an email hashed
    without Unicode normalisation, a phone hashed when merely possible (``12345``). Erasure looks
    these up too, so a person stored by an older version is found by the value as typed."""
    from streams.ingest.pii import normalize_phone

    try:
        kind, raw = parse_identifier(text)
    except ValueError:
        return []
    try:
        current: Identifier | None = stored_identifier(text, hasher, default_phone_region)
    except ValueError:
        current = None
    old: Identifier | None = None
    if kind == "email":
        value = raw.strip().lower()
        local, at, domain = value.partition("@")
        if at and local and "." in domain and " " not in value and not domain.startswith(".") and not domain.endswith("."):
            old = (kind, hasher.hash(kind, value))
    elif kind == "phone":
        e164 = normalize_phone(raw, default_phone_region)
        if e164:
            old = (kind, hasher.hash(kind, e164))
    else:
        old = (kind, raw.strip())
    return [old] if old is not None and old != current else []
