"""Value types of the identity graph: requests, resolutions, erasure results, link provenance.

Shared by the in-memory twin (:mod:`streams.identity.memory_graph`) and the Redis adapter
(:mod:`streams.identity.redis_graph`), so both speak exactly the same language.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Identifier", "ResolveRequest", "Resolution", "ErasureResult", "SplitResult", "IdentityGraph", "AsyncIdentityGraph",
    "OUTCOMES", "CHANGE_TYPES", "refusal_reason", "fmt", "parse", "seq_of", "profile_id_of", "encode_link", "provenance_path",
]

Identifier = tuple[str, str]
"""``(type, value)``; values are normalised by ingest, email/phone already keyed hashes (invariant 7)."""

OUTCOMES = ("applied", "duplicate", "erased", "blocked")
CHANGE_TYPES = ("created", "linked", "merged", "blocked", "quarantined", "conflict", "erased", "readmitted", "split")

# Separates the parts of one stored link; cannot occur in ids we generate or in sane message ids.
LINK_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    """One event to resolve: its identifiers in event order, already deduplicated."""

    message_id: str
    claim: str  # "topic/partition/offset" of the record: same claim = redelivery, not a duplicate
    identifiers: tuple[Identifier, ...]
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Resolution:
    """What resolving one event did.

    ``outcome``: "applied", "duplicate" (another record already carried this message id),
    "erased" (the event carries a suppressed identifier and is dropped, invariant 5) or
    "blocked" (no linkable identifier left). ``merged``: losers folded into ``profile_id`` by
    this event, in merge order. ``changes``: audit records for the ``identity.changes`` topic.
    ``refused``: the event's identifiers (``TYPE:VALUE`` as sent) that do not belong to
    ``profile_id`` (placeholders, quarantined, refused by a limit or uniqueness, or another
    profile's): whatever folds the event into the profile must leave them out, so the profile
    and the graph agree on its identifiers.
    """

    outcome: str
    profile_id: str | None
    merged: tuple[str, ...] = ()
    changes: tuple[dict[str, Any], ...] = ()
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What erasing one identifier removed: its whole component.

    ``profile_ids``: the live profile plus every profile id ever forwarded to it (downstream
    deletes all of them). ``identifiers``: everything that was unlinked and is now suppressed.
    ``refused``: why nothing was done (e.g. "blocked_value"), else None.
    """

    profile_id: str | None
    profile_ids: tuple[str, ...]
    identifiers: tuple[Identifier, ...]
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class SplitResult:
    """What one split did (streams/identity/split.py): ``moved`` (``TYPE:VALUE``, sorted) left
    ``profile_id`` for the new profile ``new_profile_id``; the two now refuse each other."""

    profile_id: str
    new_profile_id: str
    moved: tuple[str, ...]
    kept: int  # identifiers left in profile_id


class IdentityGraph(Protocol):
    """The synchronous identity graph (the in-memory twin)."""

    def resolve_batch(self, requests: Sequence[ResolveRequest]) -> list[Resolution]: ...
    def lookup(self, ident: Identifier) -> str | None: ...
    def current_profile(self, profile_id: str) -> str | None: ...
    def identifiers_of(self, profile_id: str) -> list[Identifier]: ...
    def erase(self, ident: Identifier) -> ErasureResult: ...
    def why(self, a: Identifier, b: Identifier) -> list[dict[str, Any]] | None: ...


class AsyncIdentityGraph(Protocol):
    """The same graph with awaitable methods (the Redis adapter)."""

    def resolve_batch(self, requests: Sequence[ResolveRequest]) -> Awaitable[list[Resolution]]: ...
    def lookup(self, ident: Identifier) -> Awaitable[str | None]: ...
    def current_profile(self, profile_id: str) -> Awaitable[str | None]: ...
    def identifiers_of(self, profile_id: str) -> Awaitable[list[Identifier]]: ...
    def erase(self, ident: Identifier) -> Awaitable[ErasureResult]: ...
    def why(self, a: Identifier, b: Identifier) -> Awaitable[list[dict[str, Any]] | None]: ...


_KNOWN_TYPES = frozenset({
    "user_id", "member_id", "crm_id", "email", "phone", "wechat_unionid", "wechat_openid", "pos_card_id",
    "device_id", "anonymous_id", "order_id"})


def refusal_reason(rule: str) -> str:
    """A bounded metric label for a refusal rule: ``limit:TYPE`` keeps known types only.

    >>> refusal_reason("limit:device_id"), refusal_reason("limit:anything_a_client_sent"), refusal_reason("invalid_phone")
    ('limit:device_id', 'limit:other', 'invalid_phone')
    """
    head, sep, kind = rule.partition(":")
    if not sep:
        return rule
    return f"{head}:{kind if kind in _KNOWN_TYPES else 'other'}"


def fmt(ident: Identifier) -> str:
    """``TYPE:VALUE``: how identifiers are written in audit records and Redis keys."""
    return f"{ident[0]}:{ident[1]}"


def parse(text: str) -> Identifier:
    """Inverse of :func:`fmt`; types never contain ':', values may."""
    kind, _, value = text.partition(":")
    return kind, value


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def profile_id_of(seq: int) -> str:
    """Profile id for sequence number ``seq``: "p" + base36 (Lua builds the same string)."""
    out = ""
    while True:
        seq, r = divmod(seq, 36)
        out = _B36[r] + out
        if seq == 0:
            return "p" + out


def seq_of(profile_id: str) -> int:
    """Sequence number of a profile id; the smaller one is older and survives a merge."""
    return int(profile_id[1:], 36)


def encode_link(via: str, message_id: str, rule: str, ts_ms: int) -> str:
    """Provenance of one identifier in a profile: which identifier it was linked to, by what."""
    return f"{via}{LINK_SEP}{message_id}{LINK_SEP}{rule}{LINK_SEP}{ts_ms}"


def provenance_path(links: Mapping[str, str], merge_edges: Iterable[str], a: str, b: str) -> list[dict[str, Any]] | None:
    """Shortest chain of recorded links joining ``a`` and ``b`` (both ``TYPE:VALUE``) in one profile.

    ``links`` maps each identifier to its encoded link (see :func:`encode_link`); ``merge_edges``
    are encoded ``x SEP y SEP message_id SEP rule SEP ts`` bridges recorded when profiles merged.
    Each step is ``{"from", "to", "message_id", "rule", "ts_ms"}``; None when not connected.
    """
    if a not in links or b not in links:
        return None
    adj: dict[str, list[tuple[str, str, str, int]]] = {}

    def edge(x: str, y: str, msg: str, rule: str, ts: int) -> None:
        adj.setdefault(x, []).append((y, msg, rule, ts))
        adj.setdefault(y, []).append((x, msg, rule, ts))

    # Identifiers never hold a control character (schema); a message id recorded before the schema
    # refused them may hold the separator: rule and time from the right, via from the left.
    for ident, enc in links.items():
        head, rule, ts_text = enc.rsplit(LINK_SEP, 2)
        via, _, msg = head.partition(LINK_SEP)
        if via:
            edge(ident, via, msg, rule, int(ts_text))
    for enc in merge_edges:
        head, rule, ts_text = enc.rsplit(LINK_SEP, 2)
        x, y, msg = head.split(LINK_SEP, 2)
        edge(x, y, msg, rule, int(ts_text))
    prev: dict[str, tuple[str, str, str, int] | None] = {a: None}
    queue = deque([a])
    while queue:
        cur = queue.popleft()
        if cur == b:
            break
        for nxt, msg, rule, ts in adj.get(cur, ()):
            if nxt not in prev:
                prev[nxt] = (cur, msg, rule, ts)
                queue.append(nxt)
    if b not in prev:
        return None
    steps: list[dict[str, Any]] = []
    cur = b
    while (p := prev[cur]) is not None:
        frm, msg, rule, ts = p
        steps.append({"from": frm, "to": cur, "message_id": msg, "rule": rule, "ts_ms": ts})
        cur = frm
    steps.reverse()
    return steps
