"""The identity graph rebuilt from its log, as a value: :func:`build_image` folds the records of
``identity.changes`` and ``profile-events`` into a :class:`GraphImage` (every Redis key and its
value), with no I/O, so the rules of the rebuild are tested without services. streams/identity/rebuild.py
reads the topics and writes the image into Redis.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.identity import dedup_window as W
from streams.identity import keys as K
from streams.identity.model import LINK_SEP, encode_link, parse, seq_of
from streams.identity.rules import PYTHON_RULES, IdentityRules
from streams.identity.sealing import is_erased
from streams.identity.split import KEPT, MOVED, SplitError, plan_split

__all__ = ["GraphImage", "build_image"]


@dataclass
class GraphImage:
    """Every key of the rebuilt graph (without the namespace prefix) and its value."""

    strings: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    window: dict[str, dict[bytes, str]] = field(default_factory=dict)  # dw: hashes (binary fields)
    ttl_s: dict[str, int] = field(default_factory=dict)   # keys with an expiry
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class _Changes:
    links: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))  # pid -> f -> link
    parent: dict[str, str] = field(default_factory=dict)          # loser -> survivor at merge time
    bridges: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # survivor -> bridges
    pids: set[str] = field(default_factory=set)
    quar: dict[str, str] = field(default_factory=dict)
    deg: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lnk: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    erased: list[dict[str, Any]] = field(default_factory=list)
    prov: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # pid -> message ids in its provenance
    readmitted: dict[str, int] = field(default_factory=dict)  # digest -> time of the consented event that readmitted it
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))  # mid -> Lua changes
    reply_pid: dict[str, str | None] = field(default_factory=dict)
    reply_ts: dict[str, int] = field(default_factory=dict)        # mid -> Kafka timestamp of its records
    missing_via: int = 0
    splits: list[dict[str, Any]] = field(default_factory=list)


_REPLY_FIELDS = ("message_id", "profile_id", "ts_ms", "unreadable")


def _apply_change(ch: _Changes, rec: dict[str, Any], kafka_ts_ms: int) -> None:
    kind = rec.get("type")
    pid = rec.get("profile_id")
    mid: Any = rec.get("message_id")  # str on every record that links (None only on refusals decided in Python)
    ts: Any = rec.get("ts_ms")
    # identifiers whose data key was shredded (an erased person) read "erased": nothing to restore
    idents = [f for f in rec.get("identifiers") or [] if not is_erased(f)]
    if pid:
        ch.pids.add(pid)
    if kind == "erased":
        ch.erased.append(rec)
        return
    if kind == "readmitted":  # the way back (streams/identity/rights.py)
        for d in rec.get("suppressed") or []:
            ch.readmitted[d] = max(ch.readmitted.get(d, 0), int(ts or 0))
        return
    for f, per_type in (rec.get("gathered") or {}).items():  # link breaker counts (lnk:*)
        for t, n in per_type.items():
            ch.lnk[f][t] += int(n)
    if mid is not None and rec.get("rule") not in PYTHON_RULES:  # refusals decided in Python are not stored
        ch.replies[mid].append({k: v for k, v in rec.items() if k not in _REPLY_FIELDS})
        ch.reply_pid[mid] = pid
        ch.reply_ts[mid] = kafka_ts_ms
    if kind in ("created", "linked", "merged") and pid and mid is not None and rec.get("identifiers"):
        ch.prov[pid].add(mid)  # whether readable or not: an erasure deletes these events' stored replies
    if kind == "created" and pid and idents:
        first = idents[0]
        ch.links[pid][first] = encode_link("", mid, "first_seen", ts)
        for f in idents[1:]:
            ch.links[pid][f] = encode_link(first, mid, "co_occurrence", ts)
    elif kind == "linked" and pid:
        via = rec.get("via")
        if isinstance(via, str) and is_erased(via):
            via = ""
        if via is None:  # records written before the audit trail carried the anchor
            ch.missing_via += 1
            via = ""
        for f in idents:
            ch.links[pid][f] = encode_link(via, mid, "co_occurrence", ts)
    elif kind == "merged" and pid:
        loser = rec["from_profile_id"]
        ch.pids.add(loser)
        ch.parent[loser] = pid
        if len(idents) == 2:
            ch.bridges[pid].append(LINK_SEP.join((idents[0], idents[1], mid, rec.get("rule", "co_occurrence"), str(ts))))
        bridged = [f for f in rec.get("bridged") or [] if not is_erased(f)]  # cjson may write an empty array as {}
        for f in bridged:
            ch.deg[f] += 1
    elif kind == "split" and pid:
        ch.splits.append(rec)
        ch.pids.add(rec["into_profile_id"])
    elif kind == "quarantined":
        for f in idents:
            ch.quar[f] = mid


def _sha1(f: str) -> str:
    return hashlib.sha1(f.encode()).hexdigest()


def _root(parent: dict[str, str], pid: str) -> str:
    seen = 0
    while pid in parent and seen < 10_000:  # merges form a forest; the bound only guards bad input
        pid = parent[pid]
        seen += 1
    return pid


def _apply_splits(ch: _Changes, links: dict[str, dict[str, str]], bridges: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Replay the recorded splits (oldest first) on the assembled trees, as lua/split.lua did;
    returns the split tags per root."""
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for rec in sorted(ch.splits, key=lambda r: (r.get("ts_ms") or 0, r["into_profile_id"])):
        S, N = _root(ch.parent, rec["profile_id"]), _root(ch.parent, rec["into_profile_id"])
        if S not in links or N not in links:  # erased since
            continue
        cut = rec.get("cut")
        try:
            plan = plan_split(links[S], bridges[S], cut=(cut[0], cut[1]) if cut else None, detach=rec.get("detached"),
                              split_id=rec["into_profile_id"], ts_ms=rec.get("ts_ms") or 0)
        except SplitError:
            continue
        for f in plan.moved:
            del links[S][f]
        links[S].update(plan.kept_links)
        links[N].update(plan.moved_links)
        bridges[S] = list(plan.kept_edges)
        bridges[N] = [*bridges[N], *plan.moved_edges]
        tags[N].update(tags[S])
        tags[S][rec["into_profile_id"]], tags[N][rec["into_profile_id"]] = KEPT, MOVED
    return tags


def build_image(changes: Iterable[tuple[dict[str, Any], int]], events: Iterable[tuple[dict[str, Any], int]],
                rules: IdentityRules, dedup_ttl_s: int, now_ms: int | None = None,
                dedup_window_s: int = 86400, dedup_shard_bits: int = 20) -> GraphImage:
    """The graph that ``changes`` (audit records) and ``events`` (profile-events values) describe.

    Both are ``(decoded value, Kafka timestamp ms)`` pairs, in any order. The dedup window's
    entries go into the slice of their record's Kafka timestamp (a little after the resolution).
    """
    events = list(events)
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000

    def remaining(kafka_ts: int) -> int:
        return dedup_ttl_s - max(0, now_ms - kafka_ts) // 1000

    ch, n_changes = _read_changes(changes)
    erased = _erasures(ch)
    trees, erased_mids = _live_trees(ch, erased.pids)
    tree_links, tree_bridges = _assemble(ch, trees)
    tags = _apply_splits(ch, tree_links, tree_bridges)
    img = GraphImage()
    _put_trees(img, trees, tree_links, tree_bridges, tags, rules)
    _put_counters(img, ch, erased)
    n_replies = _put_replies(img, ch, erased_mids, remaining)
    n_dedup = _put_dedup(img, ch, events, remaining)
    n_window = _put_window(img, events, now_ms // 1000, dedup_window_s, dedup_shard_bits)
    img.stats = {"audit_records": n_changes, "profiles": sum(1 for k in img.hashes if k.startswith(K.LINKS)), "identifiers": sum(1 for k in img.strings if k.startswith(K.ID)),
                 "merged_away": sum(1 for k in img.strings if k.startswith(K.FWD)), "erased_identifiers": len(erased.digests),
                 "quarantined": sum(1 for k in img.strings if k.startswith(K.QUAR)), "stored_replies": n_replies,
                 "dedup_keys": n_dedup, "window_ids": n_window, "seq": int(img.strings.get(K.SEQ, "0")), "links_without_via": ch.missing_via}
    return img


def _read_changes(changes: Iterable[tuple[dict[str, Any], int]]) -> tuple[_Changes, int]:
    """The audit records folded into :class:`_Changes`, each distinct record once; and how many."""
    ch = _Changes()
    seen: set[bytes] = set()
    for rec, kafka_ts in changes:
        key = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
        if key in seen:  # the same audit record written again after a redelivery
            continue
        seen.add(key)
        _apply_change(ch, rec, kafka_ts)
    return ch, len(seen)


@dataclass
class _Erased:
    pids: set[str] = field(default_factory=set)  # roots of the erased trees
    digests: set[str] = field(default_factory=set)  # SHA-1 of each erased TYPE:VALUE (the suppression key)
    at: dict[str, int] = field(default_factory=dict)  # digest -> time of its latest erasure (the suppression entry's value)


def _erasures(ch: _Changes) -> _Erased:
    """What the erasure records erased: whole trees (the live profile and everything merged into it)."""
    erased = _Erased()
    for rec in ch.erased:
        # today's records carry the digests only; older ones the identifiers themselves
        digests = [*(rec.get("suppressed") or []), *(_sha1(f) for f in rec.get("identifiers") or [])]
        erased.digests.update(digests)
        for d in digests:
            erased.at[d] = max(erased.at.get(d, 0), int(rec.get("ts_ms") or 0))
        if rec.get("profile_id"):
            erased.pids.add(_root(ch.parent, rec["profile_id"]))
    return erased


def _live_trees(ch: _Changes, erased_pids: set[str]) -> tuple[dict[str, list[str]], set[str]]:
    """The members of each live tree by root; and the events in an erased tree's provenance
    (erase.lua deleted their stored replies)."""
    trees: dict[str, list[str]] = defaultdict(list)
    for pid in ch.pids:
        trees[_root(ch.parent, pid)].append(pid)
    erased_mids: set[str] = set()
    for root in list(trees):
        if root in erased_pids:
            for pid in trees[root]:
                erased_mids |= ch.prov.get(pid, set())
            del trees[root]
    return trees, erased_mids


def _assemble(ch: _Changes, trees: dict[str, list[str]]) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """Each tree's links and bridges, its members' in creation order."""
    tree_links: dict[str, dict[str, str]] = {}
    tree_bridges: dict[str, list[str]] = {}
    for root, members in trees.items():
        links: dict[str, str] = {}
        bridges: list[str] = []
        for pid in sorted(members, key=seq_of):
            links.update(ch.links.get(pid, {}))
            bridges.extend(ch.bridges.get(pid, ()))
        tree_links[root], tree_bridges[root] = links, bridges
    return tree_links, tree_bridges


def _put_trees(img: GraphImage, trees: dict[str, list[str]], tree_links: dict[str, dict[str, str]],
               tree_bridges: dict[str, list[str]], tags: dict[str, dict[str, str]], rules: IdentityRules) -> None:
    """The keys of each live profile: links, identifier index, meta, bridges, merged-away members."""
    for root, members in trees.items():
        links, bridges = tree_links[root], tree_bridges[root]
        if not links:
            continue
        img.hashes[K.LINKS + root] = links
        meta: dict[str, str] = {f"s:{k}": side for k, side in sorted(tags.get(root, {}).items())}
        counts: dict[str, int] = defaultdict(int)
        for f in links:
            t, v = parse(f)
            counts[t] += 1
            img.strings[K.ID + f] = root
            if t in rules.unique_types:
                meta[f"u:{t}"] = v
        meta.update({f"n:{t}": str(n) for t, n in counts.items()})
        img.hashes[K.META + root] = meta
        if bridges:
            img.lists[K.BRIDGES + root] = bridges
        losers = {m for m in members if m != root}
        if losers:
            img.sets[K.MERGED + root] = losers
            for x in losers:
                img.strings[K.FWD + x] = root


def _put_counters(img: GraphImage, ch: _Changes, erased: _Erased) -> None:
    """The sequence, quarantine, degree and per-type link counters, and the suppression entries."""
    if ch.pids:
        img.strings[K.SEQ] = str(max(seq_of(p) for p in ch.pids))
    for f, mid in ch.quar.items():
        if _sha1(f) not in erased.digests:
            img.strings[K.QUAR + f] = mid
    for f, n in ch.deg.items():
        if _sha1(f) not in erased.digests and n:
            img.strings[K.DEG + f] = str(n)
    for f, per_type in ch.lnk.items():
        if _sha1(f) not in erased.digests and any(per_type.values()):
            img.hashes[K.LNK + f] = {t: str(n) for t, n in per_type.items() if n}
    for digest in erased.digests:
        at = erased.at.get(digest) or 1
        readmitted = ch.readmitted.get(digest)
        img.strings[K.SUPP + digest] = f"r{at}" if readmitted is not None and readmitted > at else str(at)


def _put_replies(img: GraphImage, ch: _Changes, erased_mids: set[str], remaining: Callable[[int], int]) -> int:
    """Stored replies of non-trivial resolutions (replayed when the same record is redelivered); how many."""
    n = 0
    for mid, recs in ch.replies.items():
        if mid in erased_mids:
            continue
        ttl = remaining(ch.reply_ts[mid])
        if ttl <= 0:
            continue
        pid = ch.reply_pid.get(mid)
        merged = [r["from_profile_id"] for r in recs if r.get("type") == "merged"]
        body = orjson.dumps({"m": merged, "c": recs}).decode()
        key = K.REPLY + mid
        img.strings[key] = f"{'applied' if pid else 'blocked'}{LINK_SEP}{pid or ''}{LINK_SEP}{body}"
        img.ttl_s[key] = ttl
        n += 1
    return n


def _put_dedup(img: GraphImage, ch: _Changes, events: Iterable[tuple[dict[str, Any], int]],
               remaining: Callable[[int], int]) -> int:
    """Dedup claims of every applied event (forwarded copies carry the same claim); how many."""
    n = 0
    for ev, kafka_ts in events:
        if "control" in ev:
            continue
        mid, claim = ev.get("message_id"), ev.get("source")
        if not mid or not claim:
            continue
        key = K.DEDUP + mid
        if key in img.strings:
            continue
        ttl = remaining(kafka_ts)
        if ttl <= 0:
            continue
        origin = ev.get("profile_id")
        # a trivial resolution (no stored reply) keeps the profile it first reported (resolve.lua)
        img.strings[key] = claim if mid in ch.replies or not origin else f"{claim}{LINK_SEP}applied{LINK_SEP}{origin}"
        img.ttl_s[key] = ttl
        n += 1
    return n


def _put_window(img: GraphImage, events: Iterable[tuple[dict[str, Any], int]], now_s: int, window_s: int,
                shard_bits: int) -> int:
    """Window-tier entries (``dw:``) of every applied event whose slice is still read; how many."""
    slice_s = W.slice_seconds(window_s)
    seen: set[str] = set()
    n = 0
    for ev, kafka_ts in events:
        mid, claim = ev.get("message_id"), ev.get("source")
        if "control" in ev or not mid or not claim or mid in seen:
            continue
        seen.add(mid)  # forwarded copies carry the same claim
        sl = W.slice_of(kafka_ts // 1000, slice_s)
        ttl = W.expires_at(sl, slice_s) - now_s
        if ttl <= 0:
            continue
        shard, fld = W.digest(mid, shard_bits)
        key = f"{K.WINDOW}{sl}:{shard}"
        img.window.setdefault(key, {})[fld] = W.claim_tag(claim)
        img.ttl_s[key] = ttl
        n += 1
    return n
