"""Audience membership: evaluate every audience on a profile, diff against what was published,
and build the ``<ns>.audiences`` records (schemas/audience-change.v1.json).

Membership of audience X is ``consent_ok(X.purpose) and X.when``, where ``consent_ok`` requires
the profile's consent flag for the purpose to be true (explicit opt-in; ``purpose = "none"`` needs
no consent, e.g. suppression lists). Erased and merged-away profiles are in no audience.

Published state: ``ax["m"][audience] = k``, the number of transitions published so far for this
profile id; odd = member. A transition increments ``k`` and its idempotency key is a hash of
``(profile id, audience, k)``: a replay of the same records from the same stored state produces
the same keys, so a consumer (or a destination) that remembers keys applies each change once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from streams.activation.definitions import AudienceDef, Definitions
from streams.profiles.profile import funnel_stage, iso

__all__ = ["members", "diff", "change_record", "idempotency_key", "lookup_for", "SCHEMA"]

SCHEMA = "touchpoint.audience-change.v1"


def lookup_for(state: dict[str, Any], computed: dict[str, Any]) -> Callable[[str], Any]:
    """The name lookup of the expression language over a live profile value and its computed traits."""
    def lookup(name: str) -> Any:
        scope, dot, rest = name.partition(".")
        if not dot:
            if name in computed:
                return computed[name]
            if name == "event_count":
                return state["n"]
            if name == "order_count":
                return state["oc"]
            if name == "funnel":
                return funnel_stage(state)
            return None
        if scope == "trait":
            pair = state["tr"].get(rest)
            return None if pair is None else pair[0]
        if scope == "consent":
            pair = state["cs"].get(rest)
            return None if pair is None else pair[0]
        if scope == "channel":
            return state["ch"].get(rest, 0)
        return None
    return lookup


def consent_ok(state: dict[str, Any], purpose: str) -> bool:
    if purpose == "none":
        return True
    pair = state["cs"].get(purpose)
    return pair is not None and pair[0] is True


def members(defs: Definitions, state: dict[str, Any] | None, computed: dict[str, Any]) -> set[str]:
    """The audiences a profile value is in (none for a tombstone or no profile)."""
    if state is None or "tomb" in state:
        return set()
    lookup = lookup_for(state, computed)
    return {a.name for a in defs.audiences if consent_ok(state, a.purpose) and _safe(a, lookup)}


def _safe(a: AudienceDef, lookup: Callable[[str], Any]) -> bool:
    try:
        return bool(a.test(lookup))
    except (TypeError, ValueError):  # e.g. a trait holding a list compared with a number
        return False


def idempotency_key(profile_id: str, audience: str, k: int) -> str:
    return hashlib.sha256(f"{profile_id}\x1f{audience}\x1f{k}".encode()).hexdigest()[:32]


def diff(published: dict[str, int], now_in: set[str]) -> list[tuple[str, bool, int]]:
    """Transitions ``(audience, entered, k)`` taking ``published`` to ``now_in``; updates ``published``.

    Sorted by audience name so the records of one change come in a stable order.
    """
    out = []
    for name in sorted(set(published) | now_in):
        k = published.get(name, 0)
        was = k % 2 == 1
        is_in = name in now_in
        if was != is_in:
            k += 1
            published[name] = k
            out.append((name, is_in, k))
    return out


def change_record(profile_id: str, audience: str, entered: bool, k: int, at_ms: int, purpose: str | None, reason: str) -> dict[str, Any]:
    """One ``<ns>.audiences`` record (keyed by profile id)."""
    return {
        "schema": SCHEMA,
        "profile_id": profile_id,
        "audience": audience,
        "change": "entered" if entered else "exited",
        "event_time": iso(at_ms),
        "ts_ms": at_ms,
        "sequence": k,
        "idempotency_key": idempotency_key(profile_id, audience, k),
        "purpose": purpose,
        "reason": reason,
    }
