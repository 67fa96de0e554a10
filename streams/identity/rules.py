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

from streams.identity.model import Identifier, fmt

__all__ = ["IdentityRules", "DEFAULT_PRIORITY", "DEFAULT_LIMITS", "DEFAULT_BLOCKED_VALUES", "DEFAULT_BLOCKED_PATTERNS"]

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
    - ``supernode_max_merges``: an identifier (not unique, not no-merge) that has bridged this many
      merges and would bridge more is quarantined: it never links anything again. None = off.
    - ``no_merge_types``: attach to a profile but never merge two (order_id is single-owner).
    """

    priority: tuple[str, ...] = DEFAULT_PRIORITY
    unique_types: frozenset[str] = frozenset({"user_id", "member_id"})
    limits: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LIMITS)
    default_limit: int = 50
    blocked_values: tuple[str, ...] = DEFAULT_BLOCKED_VALUES
    blocked_patterns: tuple[str, ...] = DEFAULT_BLOCKED_PATTERNS
    supernode_max_merges: int | None = 5
    no_merge_types: frozenset[str] = frozenset({"order_id"})

    def __post_init__(self) -> None:
        if self.supernode_max_merges is not None and self.supernode_max_merges < 0:
            raise ValueError("supernode_max_merges must be >= 0 or None")
        if any(n < 0 for n in self.limits.values()) or self.default_limit < 0:
            raise ValueError("limits must be >= 0")
        if self.unique_types & self.no_merge_types:
            raise ValueError("a type cannot be both unique and no-merge")

    @cached_property
    def _rank(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.priority)}

    @cached_property
    def _blocked_exact(self) -> frozenset[str]:
        return frozenset(v.lower() for v in self.blocked_values)

    @cached_property
    def _blocked_re(self) -> re.Pattern[str] | None:
        if not self.blocked_patterns:
            return None
        return re.compile("|".join(f"(?:{p})" for p in self.blocked_patterns), re.IGNORECASE)

    def rank(self, kind: str) -> int:
        """Sort key of a type: its priority index; unknown types after, no-merge types last."""
        if kind in self.no_merge_types:
            return len(self.priority) + 1
        return self._rank.get(kind, len(self.priority))

    def limit(self, kind: str) -> int:
        return self.limits.get(kind, self.default_limit)

    @cached_property
    def _verdicts(self) -> dict[str, bool]:
        return {}

    def is_blocked(self, ident: Identifier) -> bool:
        """True when the value is a placeholder that must never link anything."""
        value = ident[1]
        verdicts = self._verdicts  # hot path: most values repeat, the regex runs once per value
        hit = verdicts.get(value)
        if hit is None:
            rx = self._blocked_re
            hit = value.lower() in self._blocked_exact or (rx is not None and rx.fullmatch(value) is not None)
            if len(verdicts) >= 200_000:
                verdicts.clear()
            verdicts[value] = hit
        return hit

    def prepare(self, identifiers: tuple[Identifier, ...]) -> tuple[list[Identifier], list[Identifier]]:
        """Split an event's identifiers into (linkable in priority order, blocked in event order)."""
        rank = self._rank
        n = len(self.priority)
        nomerge = self.no_merge_types
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
        """Audit record for a blocked value (profile_id filled in once the event is resolved)."""
        return {"type": "blocked", "message_id": message_id, "rule": "blocked_value",
                "identifiers": [fmt(ident)], "profile_id": None, "ts_ms": ts_ms}

    def exempt_from_breaker(self, kind: str) -> bool:
        """Unique types are protected by uniqueness, no-merge types never merge: neither is counted."""
        return kind in self.unique_types or kind in self.no_merge_types

    def lua_config(self) -> str:
        """The state-dependent rules as a Lua table literal (embedded in the resolve script)."""
        kinds = set(self.priority) | set(self.limits) | set(self.unique_types) | set(self.no_merge_types)

        def lua_set(items: frozenset[str]) -> str:
            return "{" + ",".join(f"[{json.dumps(t)}]=true" for t in sorted(items)) + "}"

        limits = "{" + ",".join(f"[{json.dumps(t)}]={self.limit(t)}" for t in sorted(kinds)) + "}"
        supernode = -1 if self.supernode_max_merges is None else self.supernode_max_merges
        unique_list = "{" + ",".join(json.dumps(t) for t in sorted(self.unique_types)) + "}"
        return (f"{{unique={lua_set(self.unique_types)},unique_list={unique_list},nomerge={lua_set(self.no_merge_types)},"
                f"limit={limits},default_limit={self.default_limit},supernode={supernode}}}")
