"""Why two identifiers are, or are not, one person (``touchpoint identity why A B``).

Linked: the chain of recorded links (each with its event and rule). Not linked: the rule that
refuses joining them, decided from the graph as it stands by the same rules resolution applies
(placeholder, quarantine, a split, uniqueness, limits, no-merge), or ``never_met`` when no rule refuses it
and simply no event has carried identifiers of both. The audit records behind a refusal live on
``identity.changes``; :func:`related_records` picks them out of that topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.identity.model import fmt
from streams.identity.rules import IdentityRules

__all__ = ["Side", "explain", "related_records"]


@dataclass(frozen=True)
class Side:
    """What the graph holds about one identifier."""

    ident: tuple[str, str]
    profile_id: str | None
    quarantined_by: str | None = None          # message id that tripped the breaker
    counts: Mapping[str, int] = field(default_factory=dict)   # the profile's identifiers per type
    uniq: Mapping[str, str] = field(default_factory=dict)     # the profile's unique values
    tags: Mapping[str, str] = field(default_factory=dict)     # the profile's split tags (split.py)


def _refusal(rules: IdentityRules, a: Side, b: Side) -> tuple[str, str]:
    for s in (a, b):
        reason = None if not rules.is_blocked(s.ident) else (rules.blocked_change(s.ident, "", 0)["rule"])
        if reason:
            return reason, f"{fmt(s.ident)} is a value that never links anything"
    for s in (a, b):
        if s.quarantined_by is not None:
            return "supernode", f"{fmt(s.ident)} was quarantined by message {s.quarantined_by} and links nothing any more"
    for s in (a, b):
        if s.profile_id is None:
            return "unknown", f"{fmt(s.ident)} is in no profile (never seen, refused at ingest, or erased)"
    for s in (a, b):
        if s.ident[0] in rules.no_merge_types:
            return f"no_merge:{s.ident[0]}", f"{s.ident[0]} attaches to a profile but never joins two"
    parted = sorted(k for k, side in a.tags.items() if b.tags.get(k, side) != side)
    if parted:
        return "split", f"an operator split them apart (split {parted[0]}; its record is on identity.changes)"
    for ut in sorted(rules.unique_types):
        va, vb = a.uniq.get(ut), b.uniq.get(ut)
        if va is not None and vb is not None and va != vb:
            return f"unique:{ut}", f"the profiles hold different {ut} values ({ut}:{va}, {ut}:{vb})"
    for t in sorted(set(a.counts) | set(b.counts)):
        n = a.counts.get(t, 0) + b.counts.get(t, 0)
        if n > rules.limit(t):
            return f"limit:{t}", f"together the profiles would hold {n} {t} identifiers; the limit is {rules.limit(t)}"
    return "never_met", "no rule refuses joining them: no event has carried identifiers of both profiles"


def explain(rules: IdentityRules, a: Side, b: Side, chain: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The answer of ``why``: ``linked`` with its ``chain``, or ``refused`` with ``rule`` and ``detail``."""
    out: dict[str, Any] = {"a": fmt(a.ident), "b": fmt(b.ident), "a_profile": a.profile_id, "b_profile": b.profile_id}
    if chain is not None:
        return {**out, "linked": True, "chain": chain}
    rule, detail = _refusal(rules, a, b)
    return {**out, "linked": False, "chain": [], "rule": rule, "detail": detail}


def related_records(records: Iterable[dict[str, Any]], answer: Mapping[str, Any], profile_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Audit records (identity.changes) behind an answer: every refusal or quarantine that names
    either identifier, or that refused a link from one side's profile (or a profile merged into it)."""
    names = {answer["a"], answer["b"]}
    pids = set(profile_ids) | {p for p in (answer.get("a_profile"), answer.get("b_profile")) if p}
    out = []
    for rec in records:
        if rec.get("type") not in ("conflict", "blocked", "quarantined", "split"):
            continue
        if (names & set(rec.get("identifiers") or ()) or rec.get("from_profile_id") in pids
                or (rec.get("type") == "split" and {rec.get("profile_id"), rec.get("into_profile_id")} & pids)):
            out.append(rec)
    return out
