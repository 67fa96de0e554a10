"""Identity-resolution rules: priority, uniqueness, per-type limits, blocked values, supernode breaker.

Pure configuration built from plain values (nothing reads the environment). The state-free part
(blocked values, priority order) is applied in Python by :meth:`IdentityRules.prepare`; the
state-dependent part (uniqueness across profiles, limits, quarantine) is applied by the graph
implementations, which read their numbers from here (the Redis adapter embeds them in its Lua).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from streams.identity.model import Identifier

PII_KINDS = frozenset({"email", "phone"})

__all__ = ["IdentityRules", "DEFAULT_PRIORITY", "DEFAULT_LIMITS", "DEFAULT_BLOCKED_VALUES", "DEFAULT_BLOCKED_PATTERNS",
           "DEFAULT_TYPE_BLOCKED_VALUES", "DEFAULT_TYPE_BLOCKED_PATTERNS", "DEFAULT_REFUSED_PHONE_TYPES", "REFUSED_MARK",
           "PYTHON_RULES"]

DEFAULT_PRIORITY: tuple[str, ...] = (
    "user_id", "member_id", "crm_id", "email", "phone", "wechat_unionid", "wechat_openid",
    "pos_card_id", "device_id", "anonymous_id",
)
# Maximum identifiers of one type in one profile (Segment-style limits; PostHog/Mixpanel cap sizes too).
DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType({
    "user_id": 1, "member_id": 1, "crm_id": 3, "email": 5, "phone": 5, "wechat_unionid": 2,
    "wechat_openid": 10, "pos_card_id": 5, "device_id": 5, "anonymous_id": 50, "order_id": 1000,
})
DEFAULT_BLOCKED_VALUES: tuple[str, ...] = (
    "", "null", "none", "nil", "undefined", "anonymous", "unknown", "0", "-1", "n/a", "na", "test",
    "guest", "000000", "00000000-0000-0000-0000-000000000000", "[object object]", "nan", "false", "true",
)
DEFAULT_BLOCKED_PATTERNS: tuple[str, ...] = (
    r"[0\-\s]*",                     # all zeros / dashes: nil UUIDs, "0000", "--" (Segment's suggestion)
    r"(.)\1{3,}",                    # one character repeated: "aaaa", "1111111", "xxxxxxxx"
    r"[\"'](?:null|none|nil|undefined|nan|anonymous|guest|unknown)?[\"']",  # quoted placeholders
)
# Per-type placeholders, matched against the RAW value as normalised (email: NFKC, trimmed,
# lower-cased; phone: E.164) before any hashing, so a placeholder never becomes an identifier.
DEFAULT_TYPE_BLOCKED_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "email": ("test@test.com", "test@example.com", "a@a.com", "abc@abc.com", "no@email.com", "none@none.com",
              "null@null.com", "email@email.com", "user@domain.com", "name@domain.com"),
})
DEFAULT_TYPE_BLOCKED_PATTERNS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "email": (
        r"(?:test|testing|tester|noreply|no-reply|donotreply|do-not-reply|null|none|nobody|unknown|asdf|qwerty|x+|a+)@.*",
        r".*@(?:test|testing|localhost|invalid|mailinator\.com|none|null)(?:\.[a-z]+)?",
    ),
    "phone": (
        r"\+\d{1,3}0?(?:123456789|987654321)\d*", # sequences
        r"\+1\d{3}55501\d\d",                    # NANP fictional numbers 555-0100..555-0199
    ),
})
# Link breaker thresholds per gathered type: types a real person accumulates (cookies, devices,
# one openid per mini-program) above the default.
# A POS card is the classic victim of a shared value (the store's phone typed at the till for every
# customer): a value that already sits with one card never brings in another.
DEFAULT_LINKS_BY_TYPE: Mapping[str, int] = MappingProxyType({"anonymous_id": 10, "device_id": 4, "wechat_openid": 10,
                                                             "pos_card_id": 0})
# phonenumbers number types that are services, not people (95588-style short numbers are not
# valid numbers at all and are refused as invalid).
DEFAULT_REFUSED_PHONE_TYPES: tuple[str, ...] = ("toll_free", "premium_rate", "shared_cost", "uan", "voicemail", "pager")
PHONE_NUMBER_TYPES = ("fixed_line", "mobile", "fixed_line_or_mobile", "toll_free", "premium_rate", "shared_cost",
                      "voip", "personal_number", "pager", "uan", "voicemail", "unknown")
# An email/phone refused by ingest travels as "!<reason>:<keyed hash>" (never linked, audited hashed).
REFUSED_MARK = "!"
# Audit rules decided in Python (rules.prepare), not by the graph: not part of stored replies.
PYTHON_RULES = frozenset({"blocked_value", "blocked_pattern", "invalid_email", "invalid_phone", "service_phone"})


@dataclass(frozen=True)
class IdentityRules:
    """The rule set of one identity graph; defaults are safe for production traffic.

    - ``priority``: identifier types, strongest first; an event's identifiers are resolved in this
      order, so on a conflict the stronger side wins. Unknown types come after these, then
      ``no_merge_types``.
    - ``unique_types``: two different values never share a profile (invariant 4).
    - ``limits``: max identifiers of a type per profile (``default_limit`` for unlisted types);
      a link or merge that would exceed it is refused and audited.
    - ``blocked_values`` (case-insensitive, exact) and ``blocked_patterns`` (regex full match,
      case-insensitive): such identifiers never link anything (invariant 4).
    - ``type_blocked_values`` / ``type_blocked_patterns``: the same per type, checked on the raw
      (normalised, unhashed) value; for email and phone that happens in ingest before hashing.
    - ``phone_require_valid`` (``phonenumbers.is_valid_number``) and ``refused_phone_types``
      (service numbers: toll-free, shared-cost 400 numbers, premium rate, ...).
    - ``supernode_max_merges``: an identifier (not unique, not no-merge) that has bridged this many
      merges and would bridge more is quarantined: it never links anything again. None = off.
    - ``supernode_max_links``: an identifier that has *gathered* this many identifiers of one other
      type into its profile (linked or merged in while the profile already held one of that type,
      or refused by that type's limit or uniqueness) and would gather more is quarantined. None = off;
      ``supernode_links_by_type`` sets it per gathered type.
    - ``per_event_types``: types new with every purchase (order_id): gathering them is normal.
    - ``no_merge_types``: attach to a profile but never merge two (empty by default: an order id
      links like any identifier, so the result does not depend on arrival order).
    """

    priority: tuple[str, ...] = DEFAULT_PRIORITY
    unique_types: frozenset[str] = frozenset({"user_id", "member_id"})
    limits: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LIMITS)
    default_limit: int = 50
    blocked_values: tuple[str, ...] = DEFAULT_BLOCKED_VALUES
    blocked_patterns: tuple[str, ...] = DEFAULT_BLOCKED_PATTERNS
    type_blocked_values: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_TYPE_BLOCKED_VALUES)
    type_blocked_patterns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_TYPE_BLOCKED_PATTERNS)
    phone_require_valid: bool = True
    refused_phone_types: tuple[str, ...] = DEFAULT_REFUSED_PHONE_TYPES
    supernode_max_merges: int | None = 5
    supernode_max_links: int | None = 2
    supernode_links_by_type: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LINKS_BY_TYPE)
    per_event_types: frozenset[str] = frozenset({"order_id"})
    no_merge_types: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("supernode_max_merges", "supernode_max_links"):
            n = getattr(self, name)
            if n is not None and n < 0:
                raise ValueError(f"{name} must be >= 0 or None")
        if any(n < 0 for n in self.supernode_links_by_type.values()):
            raise ValueError("supernode_links_by_type must be >= 0")
        if any(n < 0 for n in self.limits.values()) or self.default_limit < 0:
            raise ValueError("limits must be >= 0")
        if self.unique_types & self.no_merge_types:
            raise ValueError("a type cannot be both unique and no-merge")
        patterns = [*self.blocked_patterns, *(p for ps in self.type_blocked_patterns.values() for p in ps)]
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"blocked pattern {p!r} is not a regular expression: {exc}") from None
        unknown = set(self.refused_phone_types) - set(PHONE_NUMBER_TYPES)
        if unknown:
            raise ValueError(f"refused_phone_types: unknown {sorted(unknown)}; one of {', '.join(PHONE_NUMBER_TYPES)}")

    @cached_property
    def _rank(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.priority)}

    @cached_property
    def _last(self) -> frozenset[str]:
        """Types resolved after all others (never the anchor of an event): no-merge and per-event types."""
        return self.no_merge_types | (self.per_event_types - set(self.priority))

    @cached_property
    def _blocked_exact(self) -> frozenset[str]:
        return frozenset(v.lower() for v in self.blocked_values)

    @cached_property
    def _blocked_re(self) -> re.Pattern[str] | None:
        if not self.blocked_patterns:
            return None
        return re.compile("|".join(f"(?:{p})" for p in self.blocked_patterns), re.IGNORECASE)

    def rank(self, kind: str) -> int:
        """Sort key of a type: its priority index; unknown types after, no-merge and per-event types last."""
        if kind in self._last:
            return len(self.priority) + 1
        return self._rank.get(kind, len(self.priority))

    def limit(self, kind: str) -> int:
        return self.limits.get(kind, self.default_limit)

    @cached_property
    def _type_exact(self) -> dict[str, frozenset[str]]:
        return {t: frozenset(v.lower() for v in vs) for t, vs in self.type_blocked_values.items()}

    @cached_property
    def _type_re(self) -> dict[str, re.Pattern[str]]:
        return {t: re.compile("|".join(f"(?:{p})" for p in ps), re.IGNORECASE)
                for t, ps in self.type_blocked_patterns.items() if ps}

    @cached_property
    def _verdicts(self) -> dict[Identifier, str | None]:
        return {}

    def refusal(self, ident: Identifier) -> str | None:
        """Why a value is a placeholder that must never link anything ("blocked_value" for a listed
        value, "blocked_pattern" for a pattern), else None. For email and phone ingest calls this
        on the raw normalised value before hashing (:meth:`raw_refusal`)."""
        verdicts = self._verdicts  # hot path: most values repeat, the regexes run once per value
        hit = verdicts.get(ident, "")
        if hit == "":
            kind, value = ident
            low = value.lower()
            rx, trx = self._blocked_re, self._type_re.get(kind)
            if low in self._blocked_exact or low in self._type_exact.get(kind, ()):
                hit = "blocked_value"
            elif (rx is not None and rx.fullmatch(value) is not None) or (trx is not None and trx.fullmatch(value) is not None):
                hit = "blocked_pattern"
            else:
                hit = None
            if len(verdicts) >= 200_000:
                verdicts.clear()
            verdicts[ident] = hit
        return hit

    def is_blocked(self, ident: Identifier) -> bool:
        """True when the value is a placeholder that must never link anything."""
        if ident[1].startswith(REFUSED_MARK) and ident[0] in PII_KINDS:
            return True
        return self.refusal(ident) is not None

    def prepare(self, identifiers: tuple[Identifier, ...]) -> tuple[list[Identifier], list[Identifier]]:
        """Split an event's identifiers into (linkable in priority order, blocked in event order)."""
        rank = self._rank
        n = len(self.priority)
        nomerge = self._last
        blocked: list[Identifier] = []
        keyed: list[tuple[int, int, Identifier]] = []
        for i, ident in enumerate(identifiers):
            if self.is_blocked(ident):
                blocked.append(ident)
            else:
                kind = ident[0]
                keyed.append((n + 1 if kind in nomerge else rank.get(kind, n), i, ident))
        if len(keyed) > 1:
            keyed.sort()
        return [x[2] for x in keyed], blocked

    def blocked_change(self, ident: Identifier, message_id: str, ts_ms: int) -> dict[str, Any]:
        """Audit record for a refused value (profile_id filled in once the event is resolved):
        a refused email/phone is written with its keyed hash only, its reason as the rule."""
        kind, value = ident
        rule = None
        if value.startswith(REFUSED_MARK) and kind in PII_KINDS:
            rule, _, value = value[1:].partition(":")
        return {"type": "blocked", "message_id": message_id, "rule": rule or self.refusal(ident) or "blocked_value",
                "identifiers": [f"{kind}:{value}"], "profile_id": None, "ts_ms": ts_ms}

    def exempt_from_breaker(self, kind: str) -> bool:
        """Unique types are protected by uniqueness, no-merge types never merge: neither is counted."""
        return kind in self.unique_types or kind in self.no_merge_types

    def max_links(self, kind: str) -> int:
        """How many identifiers of ``kind`` one identifier may gather before it is quarantined."""
        assert self.supernode_max_links is not None
        return self.supernode_links_by_type.get(kind, self.supernode_max_links)

    def counts_as_gathered(self, kind: str) -> bool:
        """Whether gathering identifiers of this type counts towards the link breaker."""
        return kind not in self.per_event_types

    def lua_config(self) -> str:
        """The state-dependent rules as a Lua table literal (embedded in the resolve script)."""
        kinds = set(self.priority) | set(self.limits) | set(self.unique_types) | set(self.no_merge_types) | set(self.per_event_types)

        def lua_set(items: frozenset[str]) -> str:
            return "{" + ",".join(f"[{json.dumps(t)}]=true" for t in sorted(items)) + "}"

        limits = "{" + ",".join(f"[{json.dumps(t)}]={self.limit(t)}" for t in sorted(kinds)) + "}"
        supernode = -1 if self.supernode_max_merges is None else self.supernode_max_merges
        unique_list = "{" + ",".join(json.dumps(t) for t in sorted(self.unique_types)) + "}"
        links = -1 if self.supernode_max_links is None else self.supernode_max_links
        by_type = "{" + ",".join(f"[{json.dumps(t)}]={n}" for t, n in sorted(self.supernode_links_by_type.items())) + "}"
        return (f"{{unique={lua_set(self.unique_types)},unique_list={unique_list},nomerge={lua_set(self.no_merge_types)},"
                f"limit={limits},default_limit={self.default_limit},supernode={supernode},"
                f"max_links={links},links_by_type={by_type},per_event={lua_set(self.per_event_types)}}}")
