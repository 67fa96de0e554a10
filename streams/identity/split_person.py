"""Splitting a person in two everywhere: identity graph, audit trail, profiles (issue 17 item 5).

1. The graph splits atomically (lua/split.lua): from then on ingest resolves the moved
   identifiers to the new profile N and refuses to join the two sides.
2. A ``split`` audit record on ``identity.changes`` says who (``actor``) split what.
3. A ``split`` control keyed S empties S's profile value (keeping its dedup memory) and sends
   S's in-flight events that carry only moved identifiers on to N.
4. ``profile-events`` is read to its end; the events folded into S before the control are folded
   again per side (streams/profiles/refold.py) and sent as ``refold`` controls keyed S and N,
   which each fold in once on top of whatever arrived live meanwhile (no event lost or doubled).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from streams.identity.model import Identifier, fmt
from streams.profiles.bundle import decoded_items, position
from streams.profiles.refold import events_to_refold, refold_sides

if TYPE_CHECKING:  # the adapter is passed in; importing it here would load redis (tests/test_architecture.py)
    from streams.identity.redis_graph import RedisIdentityGraph

__all__ = ["split_person", "split_record"]

Send = Callable[[bytes, bytes], Awaitable[Any]]  # returns the record's metadata (partition, offset)
Seal = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


def split_record(profile_id: str, new_profile_id: str, moved: tuple[str, ...], actor: str, now_ms: int,
                 cut: tuple[Identifier, Identifier] | None, detach: Identifier | None) -> dict[str, Any]:
    """The audit record of one split (``identity.changes``, keyed by the split profile)."""
    return {"type": "split", "rule": "operator", "actor": actor, "message_id": None, "profile_id": profile_id,
            "into_profile_id": new_profile_id, "identifiers": list(moved),
            "cut": [fmt(cut[0]), fmt(cut[1])] if cut is not None else None,
            "detached": fmt(detach) if detach is not None else None, "ts_ms": now_ms}


async def split_person(graph: RedisIdentityGraph, settings: Any, actor: str, send_change: Send, send_control: Send,
                       now_ms: int, *, cut: tuple[Identifier, Identifier] | None = None, detach: Identifier | None = None,
                       timeout_s: float = 600.0, seal: Seal | None = None) -> dict[str, Any]:
    """Split in the graph, audit, and fold both profiles again; returns a summary.
    ``seal`` seals the audit record's identifiers like every record on identity.changes
    (:class:`streams.identity.sealing.AuditSealer`).
    Raises :class:`streams.identity.split.SplitError` when the graph refuses the split."""
    from streams.kafka.reading import read_to_end
    from streams.kafka.topics import PROFILE_EVENTS

    result = await graph.split(now_ms, cut=cut, detach=detach)
    S, N = result.profile_id, result.new_profile_id
    record = split_record(S, N, result.moved, actor, now_ms, cut, detach)
    if seal is not None:
        record = (await seal([record]))[0]
    await send_change(S.encode(), orjson.dumps(record))
    control = {"control": "split", "profile_id": S, "into": N, "moved": list(result.moved), "ts_ms": now_ms}
    meta = await send_control(S.encode(), orjson.dumps(control))
    split_at = (meta.partition, position(meta.offset, 0))
    pids = {S, *(await graph.merged_into(S))}
    items = []
    async for r in read_to_end(settings, settings.topic(PROFILE_EVENTS), timeout_s):
        for index, (key, value) in enumerate(decoded_items(r.key, r.value)):
            if key is not None and isinstance(value, dict) and key.decode() in pids:
                items.append((key.decode(), r.partition, position(r.offset, index), value))
    kept = {fmt(i) for i in await graph.identifiers_of(S)}
    rules = graph.rules
    a, b, counts = refold_sides(events_to_refold(items, pids, split_at), set(result.moved), kept,
                                lambda f: rules.rank(f.partition(":")[0]))
    for pid, state in ((S, a), (N, b)):
        await send_control(pid.encode(), orjson.dumps({"control": "refold", "profile_id": pid, "split": N, "state": state}))
    return {"profile_id": S, "new_profile_id": N, "moved": list(result.moved), "kept": result.kept,
            "events_refolded": {S: counts["kept"], N: counts["moved"]}}
