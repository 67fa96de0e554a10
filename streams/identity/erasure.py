"""Erasing a person everywhere: identity graph, profiles, and an audit record (invariant 5).

The graph removes the whole component and keeps suppression entries, so replayed old events
stay dropped; the profiles stage is told to delete every profile id of the component; the audit
trail records the erasure with the suppression digests (SHA-1 of TYPE:VALUE) only, naming no
identifier, so an erasure adds no readable trace of the person (invariants 5, 7). Records written
before the erasure still name them (see docs/identity.md, "Not done").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from streams.identity.memory_graph import suppression_digest
from streams.identity.model import ErasureResult, Identifier, fmt

if TYPE_CHECKING:  # the adapter is passed in; importing it here would load redis (tests/test_architecture.py)
    from streams.identity.redis_graph import RedisIdentityGraph

__all__ = ["erase_person"]

Send = Callable[[bytes, bytes], Awaitable[object]]


async def erase_person(graph: RedisIdentityGraph, ident: Identifier | None, send_change: Send, send_control: Send, now_ms: int,
                       legacy: Sequence[Identifier] = ()) -> ErasureResult:
    """Erase the component of ``ident`` and of each ``legacy`` form of it that is still in the
    graph (see :func:`streams.identity.identifiers.legacy_forms`); one merged result."""
    results: list[ErasureResult] = []
    if ident is not None:
        results.append(await _erase_one(graph, ident, send_change, send_control, now_ms))
    for old in legacy:
        if await graph.lookup(old) is not None:  # only what an older version stored: never audit a raw value otherwise
            results.append(await _erase_one(graph, old, send_change, send_control, now_ms))
    done = [r for r in results if not r.refused]
    if not done:
        return results[0] if results else ErasureResult(None, (), ())
    first = next((r.profile_id for r in done if r.profile_id), None)
    return ErasureResult(first, tuple(p for r in done for p in r.profile_ids), tuple(i for r in done for i in r.identifiers))


async def _erase_one(graph: RedisIdentityGraph, ident: Identifier, send_change: Send, send_control: Send, now_ms: int) -> ErasureResult:
    result = await graph.erase(ident)
    if result.refused:
        return result
    key = (result.profile_id or fmt(ident)).encode()
    # the record names no identifier of the erased person, only the suppression digests
    # (what `identity rebuild` needs to keep them erased), so erasing adds no readable trace
    audit = {"type": "erased", "rule": "erasure", "message_id": None, "profile_id": result.profile_id, "identifiers": [],
             "suppressed": [suppression_digest(fmt(i)) for i in result.identifiers] or [suppression_digest(fmt(ident))],
             "ts_ms": now_ms}
    await send_change(key, orjson.dumps(audit))
    for pid in result.profile_ids:
        await send_control(pid.encode(), orjson.dumps({"control": "erase", "profile_id": pid, "ts_ms": now_ms}))
    return result
