"""Erasing a person everywhere: identity graph, profiles, and an audit record (invariant 5).

The graph removes the whole component and keeps suppression entries, so replayed old events
stay dropped; the profiles stage is told to delete every profile id of the component; the audit
trail records the erasure with the suppression digests (SHA-1 of TYPE:VALUE) only, sealed under
the ledger key, naming no identifier, so an erasure adds no readable trace of the person
(invariants 5, 7). The records written before the erasure name the person's identifiers sealed
under their data keys (streams/identity/sealing.py): the erasure shreds those keys (deleted from
Redis, tombstoned on identity.keys) first, so those records read "erased" from then on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from streams.identity.memory_graph import suppression_digest
from streams.identity.model import ErasureResult, Identifier, fmt
from streams.identity.sealing import KeyStore, Publish, derive, seal_suppressed, shred

if TYPE_CHECKING:  # the adapter is passed in; importing it here would load redis (tests/test_architecture.py)
    from streams.identity.redis_graph import RedisIdentityGraph

__all__ = ["erase_person", "Shredder"]

Send = Callable[[bytes, bytes], Awaitable[object]]


@dataclass(frozen=True)
class Shredder:
    """What crypto-shredding needs: the data key store, the PII key, and a send to identity.keys."""

    store: KeyStore
    pii_key: str
    send_key: Publish


async def erase_person(graph: RedisIdentityGraph, ident: Identifier | None, send_change: Send, send_control: Send, now_ms: int,
                       legacy: Sequence[Identifier] = (), shredder: Shredder | None = None) -> ErasureResult:
    """Erase the component of ``ident`` and of each ``legacy`` form of it that is still in the
    graph (see :func:`streams.identity.identifiers.legacy_forms`); one merged result."""
    results: list[ErasureResult] = []
    if ident is not None:
        results.append(await _erase_one(graph, ident, send_change, send_control, now_ms, shredder))
    for old in legacy:
        if await graph.lookup(old) is not None:  # only what an older version stored: never audit a raw value otherwise
            results.append(await _erase_one(graph, old, send_change, send_control, now_ms, shredder))
    done = [r for r in results if not r.refused]
    if not done:
        return results[0] if results else ErasureResult(None, (), ())
    first = next((r.profile_id for r in done if r.profile_id), None)
    return ErasureResult(first, tuple(p for r in done for p in r.profile_ids), tuple(i for r in done for i in r.identifiers))


async def _erase_one(graph: RedisIdentityGraph, ident: Identifier, send_change: Send, send_control: Send, now_ms: int,
                     shredder: Shredder | None) -> ErasureResult:
    if shredder is not None and not graph.rules.is_blocked(ident):
        # Shred first (a crash after the graph's erasure would leave nothing to find the keys by);
        # again below for identifiers a merge may have brought in meanwhile (idempotent).
        pid = await graph.lookup(ident)
        names = [fmt(i) for i in await graph.identifiers_of(pid)] if pid else []
        await shred(shredder.store, shredder.pii_key, [fmt(ident), *names], shredder.send_key)
    result = await graph.erase(ident, now_ms)
    if result.refused:
        return result
    if shredder is not None:
        await shred(shredder.store, shredder.pii_key, [fmt(i) for i in result.identifiers], shredder.send_key)
    key = (result.profile_id or "erasure").encode()  # never the identifier itself
    # the record names no identifier of the erased person, only the suppression digests
    # (what `identity rebuild` needs to keep them erased), sealed under the ledger key so that
    # a guess cannot be tested against them: erasing adds no readable trace
    digests = [suppression_digest(fmt(i)) for i in result.identifiers] or [suppression_digest(fmt(ident))]
    audit = {"type": "erased", "rule": "erasure", "message_id": None, "profile_id": result.profile_id, "identifiers": [],
             "suppressed": seal_suppressed(derive(shredder.pii_key, b"erasure-ledger-v1"), digests) if shredder else digests,
             "ts_ms": now_ms}
    await send_change(key, orjson.dumps(audit))
    for pid in result.profile_ids:
        await send_control(pid.encode(), orjson.dumps({"control": "erase", "profile_id": pid, "ts_ms": now_ms}))
    return result
