"""The in-memory twin of the Redis identity graph: same rules, same outcomes, same profile ids.

A line-by-line mirror of ``lua/resolve.lua`` and ``lua/erase.lua`` over plain dicts, used by unit
and contract tests (and anywhere a graph without Redis is wanted). Dedup keys never expire here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.identity.explain import Side, explain
from streams.identity.model import (
    LINK_SEP,
    ErasureResult,
    Identifier,
    Resolution,
    ResolveRequest,
    SplitResult,
    encode_link,
    fmt,
    parse,
    profile_id_of,
    provenance_path,
    seq_of,
)
from streams.identity.rules import IdentityRules
from streams.identity.split import KEPT, MOVED, SPLIT_RULE, SplitError, plan_split

__all__ = ["MemoryIdentityGraph", "AsyncMemoryGraph", "suppression_digest", "finish_resolution", "REFUSAL_TYPES", "suppressed", "readmittable"]

# Audit record types whose identifiers are not linked to the event's profile.
REFUSAL_TYPES = frozenset({"blocked", "conflict", "quarantined"})


def suppressed(entry: str | None, ts_ms: int) -> bool:
    """Does a suppression entry drop an event at ``ts_ms``? (resolve.lua decides the same.)"""
    return entry is not None and not (entry.startswith("r") and ts_ms > int(entry[1:]))


def readmittable(entry: str | None, ts_ms: int) -> bool:
    """May a consented event at ``ts_ms`` readmit this suppression entry? Only one that knows its
    erasure time, not yet readmitted, erased before the event."""
    return entry is not None and entry.isdigit() and entry != "1" and int(entry) < ts_ms


def suppression_digest(f: str) -> str:
    """Key suffix of a suppression entry: SHA-1 of ``TYPE:VALUE`` (what Lua's redis.sha1hex gives)."""
    return hashlib.sha1(f.encode()).hexdigest()


def finish_resolution(req: ResolveRequest, blocked: list[Identifier], rules: IdentityRules, outcome: str,
                      profile_id: str | None, merged: Sequence[str], changes: Sequence[dict[str, Any]],
                      skipped: Sequence[str] = ()) -> Resolution:
    """Complete the graph's answer with the request's own facts (shared by both graphs).

    Blocked-value audits (decided in Python before the graph is touched) go first; every record
    gets the event's message id, time and resolved profile id. Duplicates and erased events leave
    no audit trail: the first is already recorded, the second must not be (invariant 5).
    ``skipped``: identifiers the graph ignored because they were quarantined before this event.
    """
    if outcome in ("duplicate", "erased"):
        return Resolution(outcome, None)
    out: list[dict[str, Any]] = [rules.blocked_change(b, req.message_id, req.ts_ms) for b in blocked]
    out.extend(changes)
    refused = {fmt(b) for b in blocked}
    refused.update(skipped)
    for rec in out:
        rec["message_id"] = req.message_id
        rec["profile_id"] = profile_id
        rec["ts_ms"] = req.ts_ms
        if rec["type"] in REFUSAL_TYPES:
            refused.update(rec["identifiers"])
    if profile_id is None:
        refused.update(fmt(i) for i in req.identifiers)
    return Resolution(outcome, profile_id, tuple(merged), tuple(out),
                      tuple(f for f in dict.fromkeys(fmt(i) for i in req.identifiers) if f in refused))


@dataclass
class _Profile:
    links: dict[str, str] = field(default_factory=dict)   # "t:v" -> encoded link (provenance)
    counts: dict[str, int] = field(default_factory=dict)  # identifiers per type (limits)
    uniq: dict[str, str] = field(default_factory=dict)    # unique type -> its one value
    edges: list[str] = field(default_factory=list)        # merge bridges (provenance)
    losers: set[str] = field(default_factory=set)         # every id forwarded here
    tags: dict[str, str] = field(default_factory=dict)    # split id -> side (streams/identity/split.py)


@dataclass
class _Cand:
    t: str
    v: str
    f: str
    pid: str | None = None


class MemoryIdentityGraph:
    """Synchronous identity graph over dicts; semantics identical to :class:`RedisIdentityGraph`."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self._ids: dict[str, str] = {}
        self._profiles: dict[str, _Profile] = {}
        self._fwd: dict[str, str] = {}
        self._dedup: dict[str, str] = {}
        self._trivial: dict[str, tuple[str, str]] = {}  # message id -> (outcome, pid) of a trivial resolution
        self._dres: dict[str, tuple[str, str | None, list[str], list[dict[str, Any]]]] = {}
        self._supp: dict[str, str] = {}  # digest -> erasure ms ("1": unknown), "r<ms>" once readmitted
        self._quar: set[str] = set()
        self._quar_by: dict[str, str] = {}  # quarantined -> message id that tripped it
        self._deg: dict[str, int] = {}
        self._lnk: dict[str, dict[str, int]] = {}  # link breaker: identifiers gathered per type
        self._seq = 0

    # -- resolution -------------------------------------------------------------------------

    def resolve_batch(self, requests: Sequence[ResolveRequest]) -> list[Resolution]:
        """Resolve events in order; each one is atomic (like one Lua call)."""
        out = []
        for req in requests:
            linkable, blocked = self.rules.prepare(req.identifiers)
            outcome, pid, merged, changes = self._resolve_one(req, linkable)
            skipped = [f for t, v in linkable if (f := fmt((t, v))) in self._quar]
            out.append(finish_resolution(req, blocked, self.rules, outcome, pid, merged, changes, skipped))
        return out

    def _resolve_one(self, req: ResolveRequest, linkable: list[Identifier]
                     ) -> tuple[str, str | None, list[str], list[dict[str, Any]]]:
        prev = self._dedup.get(req.message_id)
        if prev is None:
            self._dedup[req.message_id] = req.claim
        elif prev != req.claim:
            return "duplicate", None, [], []
        same_claim_redelivery = prev is not None and req.message_id in self._dres
        cands = [_Cand(t, v, fmt((t, v))) for t, v in linkable]
        if any(suppressed(self._supp.get(suppression_digest(c.f)), req.ts_ms) for c in cands):
            return "erased", None, [], []
        if same_claim_redelivery:
            outcome, pid, losers, stored = self._dres[req.message_id]
            return outcome, pid, list(losers), [dict(c) for c in stored]
        if prev is not None and req.message_id in self._trivial:
            # a redelivery reports the profile first reported, not the current survivor (resolve.lua)
            outcome, pid = self._trivial[req.message_id]
            return outcome, pid, [], []

        live = []
        for c in cands:
            if c.f not in self._quar:
                c.pid = self._ids.get(c.f)
                live.append(c)

        quarantined: list[dict[str, Any]] = []
        while True:
            group, order, attach, mapped, audits = self._plan(live)
            gathered = self._gathered(order, attach, audits, mapped)
            hit = self._breaker_hits(order, mapped, gathered)
            if not hit:
                break
            live = self._quarantine(live, hit, req.message_id, quarantined)

        changes = quarantined + audits
        merged: list[str] = []

        def reply(outcome: str, pid: str | None) -> tuple[str, str | None, list[str], list[dict[str, Any]]]:
            if changes or merged:
                self._dres[req.message_id] = (outcome, pid, list(merged), [dict(c) for c in changes])
            elif pid is not None:
                self._trivial[req.message_id] = (outcome, pid)
            return outcome, pid, merged, changes

        if not order and not attach:
            return reply("blocked", None)

        S, created = self._survivor(order)
        anchor = mapped[0] if mapped else attach[0]
        losers = self._fold_losers(S, order)
        merged.extend(self._record_merges(req, S, order, group, mapped, losers, anchor, changes))
        self._credit_gathered(gathered)
        self._attach_new(req, S, attach, anchor, created, changes)
        if gathered:  # on the event's last record: `identity rebuild` restores lnk:* from it
            changes[-1]["gathered"] = gathered
        return reply("applied", S)

    # The steps of one resolution, named as in resolve.lua.

    def _quarantine(self, live: list[_Cand], hit: set[str], message_id: str, quarantined: list[dict[str, Any]]) -> list[_Cand]:
        """Quarantine the hit identifiers (one record each); the candidates left."""
        rest = []
        for c in live:
            if c.f in hit:
                self._quar.add(c.f)
                self._quar_by[c.f] = message_id
                quarantined.append({"type": "quarantined", "rule": "supernode", "identifiers": [c.f], "from_profile_id": c.pid})
            else:
                rest.append(c)
        return rest

    def _survivor(self, order: list[str]) -> tuple[str, bool]:
        """The oldest profile of the group (smallest sequence), or a new one (and True)."""
        if order:
            return min(order, key=seq_of), False
        self._seq += 1
        S = profile_id_of(self._seq)
        self._profiles[S] = _Profile()
        return S, True

    def _fold_losers(self, S: str, order: list[str]) -> list[str]:
        """Fold every other profile of the group into S, oldest first; the losers."""
        prof = self._profiles[S]
        losers = sorted((p for p in order if p != S), key=seq_of)
        for L in losers:
            lp = self._profiles.pop(L)
            for f, enc in lp.links.items():
                self._ids[f] = S
                prof.links[f] = enc
            for t, n in lp.counts.items():
                prof.counts[t] = prof.counts.get(t, 0) + n
            prof.uniq.update(lp.uniq)
            prof.tags.update(lp.tags)
            prof.edges.extend(lp.edges)
            fwd = lp.losers | {L}
            for x in fwd:
                self._fwd[x] = S
            prof.losers |= fwd
        return losers

    def _record_merges(self, req: ResolveRequest, S: str, order: list[str], group: dict[str, str], mapped: list[_Cand],
                       losers: list[str], anchor: _Cand, changes: list[dict[str, Any]]) -> list[str]:
        """The anchor's bridges to every other profile of the group (provenance for why), a
        ``merged`` record per loser and the merge breaker's counts; the merged ids."""
        rules, prof, merged = self.rules, self._profiles[S], []
        if len(order) >= 2:
            for pid in order:
                if pid != anchor.pid:
                    prof.edges.append(LINK_SEP.join((anchor.f, group[pid], req.message_id, "co_occurrence", str(req.ts_ms))))
            bridged = ([c.f for c in mapped if not rules.exempt_from_breaker(c.t)]
                       if rules.supernode_max_merges is not None else [])
            for L in losers:
                pair = [group[S], anchor.f] if L == anchor.pid else [anchor.f, group[L]]
                rec: dict[str, Any] = {"type": "merged", "rule": "co_occurrence", "identifiers": pair, "from_profile_id": L}
                if bridged:  # identifiers whose breaker count this merge raises (identity rebuild)
                    rec["bridged"] = list(bridged)
                changes.append(rec)
                merged.append(L)
            if rules.supernode_max_merges is not None:
                for c in mapped:
                    if not rules.exempt_from_breaker(c.t):
                        self._deg[c.f] = self._deg.get(c.f, 0) + len(order) - 1
        return merged

    def _credit_gathered(self, gathered: dict[str, dict[str, int]]) -> None:
        """Link breaker: credit each bridge with what this event gathers."""
        for f, per_type in gathered.items():
            counts = self._lnk.setdefault(f, {})
            for t, n in per_type.items():
                counts[t] = counts.get(t, 0) + n

    def _attach_new(self, req: ResolveRequest, S: str, attach: list[_Cand], anchor: _Cand, created: bool,
                    changes: list[dict[str, Any]]) -> None:
        """Attach the new identifiers to S, each linked to the anchor with this event as provenance."""
        rules, prof = self.rules, self._profiles[S]
        if attach:
            fs = []
            for c in attach:
                via, rule = (("", "first_seen") if c is anchor else (anchor.f, "co_occurrence"))
                self._ids[c.f] = S
                prof.links[c.f] = encode_link(via, req.message_id, rule, req.ts_ms)
                prof.counts[c.t] = prof.counts.get(c.t, 0) + 1
                if c.t in rules.unique_types:
                    prof.uniq[c.t] = c.v
                fs.append(c.f)
            if created:
                changes.append({"type": "created", "rule": "first_seen", "identifiers": fs})
            else:  # via = the anchor they were linked to (identity rebuild restores provenance)
                changes.append({"type": "linked", "rule": "co_occurrence", "identifiers": fs, "via": anchor.f})

    def _gathered(self, order: list[str], attach: list[_Cand], audits: list[dict[str, Any]],
                  mapped: list[_Cand]) -> dict[str, dict[str, int]]:
        """Per bridge (a mapped identifier that is not unique or no-merge), the identifiers of each
        other type this event brings into its profile while that profile already holds one of the
        type: merged in from other profiles, linked, or refused by a limit or by uniqueness."""
        rules = self.rules
        if rules.supernode_max_links is None or not order:
            return {}
        total: dict[str, int] = {}
        for pid in order:
            for t, n in self._profiles[pid].counts.items():
                total[t] = total.get(t, 0) + n
        for c in attach:
            total[c.t] = total.get(c.t, 0) + 1
        for a in audits:
            head, _, t = a["rule"].partition(":")
            if head in ("limit", "unique"):
                total[t] = total.get(t, 0) + 1
                # a profile refused by another type's rule (an order-id limit, say) still brings
                # in the refused identifier's own type (resolve.lua does the same)
                tf = a["identifiers"][0].partition(":")[0]
                if a.get("from_profile_id") and tf != t:
                    total[tf] = total.get(tf, 0) + 1
        out: dict[str, dict[str, int]] = {}
        for c in mapped:
            if rules.exempt_from_breaker(c.t):
                continue
            own = self._profiles[c.pid].counts  # type: ignore[index]
            got = {t: n - own[t] for t, n in total.items()
                   if t != c.t and own.get(t, 0) > 0 and n > own[t] and rules.counts_as_gathered(t)}
            if got:
                out[c.f] = got
        return out

    def _breaker_hits(self, order: list[str], mapped: list[_Cand], gathered: dict[str, dict[str, int]]) -> set[str]:
        """Identifiers that would bridge more merges, or gather more identifiers of one other type,
        than the rules allow (the supernode breaker, invariant 4)."""
        rules = self.rules
        hit: set[str] = set()
        if rules.supernode_max_merges is not None and len(order) >= 2:
            k = len(order) - 1
            hit.update(c.f for c in mapped if not rules.exempt_from_breaker(c.t)
                       and self._deg.get(c.f, 0) + k > rules.supernode_max_merges)
        for f, per_type in gathered.items():
            counts = self._lnk.get(f, {})
            if f not in hit and any(counts.get(t, 0) + n > rules.max_links(t) for t, n in per_type.items()):
                hit.add(f)
        return hit

    def _plan(self, live: list[_Cand]) -> tuple[dict[str, str], list[str], list[_Cand], list[_Cand], list[dict[str, Any]]]:
        """One pass in priority order; the stronger identifier wins every conflict (mirrors Lua's plan)."""
        rules = self.rules
        group: dict[str, str] = {}
        order: list[str] = []
        U: dict[str, str] = {}
        TG: dict[str, str] = {}  # split tags of the planned profile
        C: dict[str, int] = {}
        attach: list[_Cand] = []
        mapped: list[_Cand] = []
        audits: list[dict[str, Any]] = []
        unique_list = sorted(rules.unique_types)
        for c in live:
            t, v, pid = c.t, c.v, c.pid
            if pid is not None:
                if pid in group:
                    mapped.append(c)
                elif t in rules.no_merge_types and order:
                    audits.append({"type": "conflict", "rule": f"no_merge:{t}", "identifiers": [c.f], "from_profile_id": pid})
                else:
                    p = self._profiles[pid]
                    bad = next((ut for ut in unique_list if ut in p.uniq and ut in U and U[ut] != p.uniq[ut]), None)
                    if bad is not None:
                        audits.append({"type": "conflict", "rule": f"unique:{bad}", "identifiers": [c.f], "from_profile_id": pid})
                        continue
                    if any(TG.get(k, side) != side for k, side in p.tags.items()):
                        audits.append({"type": "conflict", "rule": SPLIT_RULE, "identifiers": [c.f], "from_profile_id": pid})
                        continue
                    over = next((lt for lt in sorted(p.counts) if C.get(lt, 0) + p.counts[lt] > rules.limit(lt)), None)
                    if over is not None:
                        audits.append({"type": "blocked", "rule": f"limit:{over}", "identifiers": [c.f], "from_profile_id": pid})
                        continue
                    group[pid] = c.f
                    order.append(pid)
                    mapped.append(c)
                    U.update(p.uniq)
                    TG.update(p.tags)
                    for lt, n in p.counts.items():
                        C[lt] = C.get(lt, 0) + n
            elif t in rules.unique_types and t in U and U[t] != v:
                audits.append({"type": "conflict", "rule": f"unique:{t}", "identifiers": [c.f]})
            elif C.get(t, 0) + 1 > rules.limit(t):
                audits.append({"type": "blocked", "rule": f"limit:{t}", "identifiers": [c.f]})
            else:
                C[t] = C.get(t, 0) + 1
                if t in rules.unique_types:
                    U[t] = v
                attach.append(c)
        return group, order, attach, mapped, audits

    # -- reads --------------------------------------------------------------------------------

    def lookup(self, ident: Identifier) -> str | None:
        """Current profile id of an identifier (always the live survivor), or None."""
        return self._ids.get(fmt(ident))

    def current_profile(self, profile_id: str) -> str | None:
        """The live profile a (possibly merged-away) profile id now lives in, or None if unknown/erased."""
        if profile_id in self._profiles:
            return profile_id
        return self._fwd.get(profile_id)

    def identifiers_of(self, profile_id: str) -> list[Identifier]:
        """Identifiers of the (forwarded) profile, sorted by priority then value."""
        cur = self.current_profile(profile_id)
        if cur is None:
            return []
        return sort_identifiers(self.rules, self._profiles[cur].links)

    def why(self, a: Identifier, b: Identifier) -> list[dict[str, Any]] | None:
        """Chain of links (message id and rule per link) joining two identifiers, or None."""
        pa, pb = self.lookup(a), self.lookup(b)
        if pa is None or pa != pb:
            return None
        p = self._profiles[pa]
        return provenance_path(p.links, p.edges, fmt(a), fmt(b))

    def explain(self, a: Identifier, b: Identifier) -> dict[str, Any]:
        """Why ``a`` and ``b`` are or are not one person (see :mod:`streams.identity.explain`)."""
        def side(i: Identifier) -> Side:
            pid = self.lookup(i)
            p = self._profiles.get(pid) if pid else None
            quar = None if fmt(i) not in self._quar else self._quar_by.get(fmt(i), "")
            return Side(i, pid, quar, dict(p.counts) if p else {}, dict(p.uniq) if p else {}, dict(p.tags) if p else {})

        return explain(self.rules, side(a), side(b), self.why(a, b))

    # -- split --------------------------------------------------------------------------------

    def split(self, ts_ms: int, *, cut: tuple[Identifier, Identifier] | None = None,
              detach: Identifier | None = None) -> SplitResult:
        """Cut one recorded link (or merge bridge) or detach one identifier (mirrors lua/split.lua);
        raises :class:`streams.identity.split.SplitError` when that cannot be done."""
        first = fmt(cut[0] if cut is not None else detach)  # type: ignore[arg-type]
        S = self._ids.get(first)
        if S is None:
            raise SplitError(f"{first} is not in a profile")
        prof = self._profiles[S]
        N = profile_id_of(self._seq + 1)  # the next profile id, taken once the plan stands
        plan = plan_split(prof.links, prof.edges,
                          cut=(fmt(cut[0]), fmt(cut[1])) if cut is not None else None,
                          detach=fmt(detach) if detach is not None else None, split_id=N, ts_ms=ts_ms)
        self._seq += 1
        new = self._profiles[N] = _Profile()
        for f in plan.moved:
            t, v = parse(f)
            self._ids[f] = N
            del prof.links[f]
            new.links[f] = plan.moved_links[f]
            prof.counts[t] -= 1
            if not prof.counts[t]:
                del prof.counts[t]
            new.counts[t] = new.counts.get(t, 0) + 1
            if prof.uniq.get(t) == v:
                del prof.uniq[t]
                new.uniq[t] = v
        prof.links.update(plan.kept_links)
        prof.edges = list(plan.kept_edges)
        new.edges = list(plan.moved_edges)
        new.tags = dict(prof.tags)
        prof.tags[N], new.tags[N] = KEPT, MOVED
        return SplitResult(S, N, plan.moved, len(prof.links))

    # -- erasure ------------------------------------------------------------------------------

    def readmit(self, digests: Sequence[str], ts_ms: int) -> list[str]:
        """The way back: suppression entries erased before ``ts_ms`` let later events pass (see
        streams/identity/rights.py); returns the digests readmitted."""
        out = []
        for d in digests:
            value = self._supp.get(d)
            if readmittable(value, ts_ms):
                self._supp[d] = "r" + str(value)
                out.append(d)
        return out

    def erase(self, ident: Identifier, at_ms: int | None = None) -> ErasureResult:
        """Remove the whole component of ``ident`` and suppress all its identifiers (invariant 5)."""
        if self.rules.is_blocked(ident):
            return ErasureResult(None, (), (), refused="blocked_value")
        f = fmt(ident)
        pid = self._ids.get(f)
        idents, losers = [f], []
        if pid is not None:
            p = self._profiles[pid]
            idents, losers = list(p.links), sorted(p.losers)
        for x in idents:
            self._ids.pop(x, None)
            self._deg.pop(x, None)
            self._lnk.pop(x, None)
            self._quar.discard(x)
            self._quar_by.pop(x, None)
            self._supp[suppression_digest(x)] = str(at_ms) if at_ms is not None else "1"
        for L in losers:
            self._fwd.pop(L, None)
        if pid is not None:
            p = self._profiles.pop(pid)
            # the stored replies of the events in its provenance name the person (erase.lua does the same)
            for enc in p.links.values():
                self._dres.pop(enc.split(LINK_SEP)[1], None)
            for enc in p.edges:
                self._dres.pop(enc.split(LINK_SEP)[2], None)
        return ErasureResult(pid, tuple(([pid] if pid else []) + sorted(losers, key=seq_of)),
                             tuple(sort_identifiers(self.rules, idents)))


def sort_identifiers(rules: IdentityRules, fs: Any) -> list[Identifier]:
    """``TYPE:VALUE`` strings as identifiers in a stable order: priority, then value."""
    return sorted((parse(f) for f in fs), key=lambda i: (rules.rank(i[0]), i[0], i[1]))


class AsyncMemoryGraph:
    """A :class:`MemoryIdentityGraph` behind the ingest stage's async ``resolve_batch`` (the
    stage's tests and benchmarks without Redis)."""

    def __init__(self, rules: IdentityRules | None = None) -> None:
        self.graph = MemoryIdentityGraph(rules if rules is not None else IdentityRules())

    async def resolve_batch(self, requests: Sequence[ResolveRequest]) -> list[Resolution]:
        return self.graph.resolve_batch(requests)
