"""Erasing a person everywhere: identity graph, profiles, and an audit record (invariant 5).

The graph removes the whole component and keeps suppression entries, so replayed old events
stay dropped; the profiles stage is told to delete every profile id of the component; the audit
trail records the erasure with hashed identifiers only (invariant 7).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from streams.identity.model import ErasureResult, Identifier, fmt
from streams.identity.redis_graph import RedisIdentityGraph

__all__ = ["erase_person"]

Send = Callable[[bytes, bytes], Awaitable[object]]


async def erase_person(graph: RedisIdentityGraph, ident: Identifier, send_change: Send, send_control: Send, now_ms: int) -> ErasureResult:
    result = await graph.erase(ident)
    if result.refused:
        return result
    key = (result.profile_id or fmt(ident)).encode()
    audit = {"type": "erased", "rule": "erasure", "message_id": None, "profile_id": result.profile_id,
             "identifiers": [fmt(i) for i in result.identifiers] or [fmt(ident)], "ts_ms": now_ms}
    await send_change(key, orjson.dumps(audit))
    for pid in result.profile_ids:
        await send_control(pid.encode(), orjson.dumps({"control": "erase", "profile_id": pid, "ts_ms": now_ms}))
    return result
