"""The way back for an erased person who returns and consents again (docs/identity.md, rights).

An erasure keeps a suppression entry per identifier (``supp:<sha1(TYPE:VALUE)>``) whose value is
the erasure time: every event carrying one is dropped, whatever its time (replays, late events,
a stale app still sending). An event that carries **fresh consent** (``context.consent`` granting
at least one purpose) and is later than the erasure **readmits** the identifiers it carries: ingest
marks their entries ``r<erasure ms>`` before resolving the batch (and writes a ``readmitted``
audit record with the digests, sealed, so ``identity rebuild`` restores it). From then on events
carrying them pass if they are later than the erasure, and build a **new profile**: the graph kept
nothing of the old one, its audit records are unreadable (shredded keys), and identifiers the
returning event did not carry stay suppressed, so nothing of the old person comes back through
them, nor through a replay of old events (earlier than the erasure: still dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from streams.identity.memory_graph import MemoryIdentityGraph, suppression_digest
from streams.identity.model import Identifier, fmt

__all__ = ["grants_consent", "readmission_digests", "readmitted_record", "Readmitter", "MemoryReadmitter"]


def grants_consent(consent: Any) -> bool:
    """Does Segment's ``context.consent`` (``categoryPreferences`` or flat ``{purpose: bool}``) grant any purpose?"""
    if not isinstance(consent, dict):
        return False
    prefs = consent.get("categoryPreferences", consent)
    return isinstance(prefs, dict) and any(v is True for v in prefs.values())


def readmission_digests(identifiers: Sequence[Identifier]) -> list[str]:
    return [suppression_digest(fmt(i)) for i in identifiers]


def readmitted_record(message_id: str, digests: Sequence[str], ts_ms: int) -> dict[str, Any]:
    """The audit record of a readmission (``suppressed`` is sealed by the audit sealer)."""
    return {"type": "readmitted", "rule": "consent", "message_id": message_id, "profile_id": None, "identifiers": [],
            "suppressed": list(digests), "ts_ms": ts_ms}


class Readmitter(Protocol):
    """Readmits, per consented event ``(digests, event ms)``, the entries erased before it;
    returns the digests readmitted for each (streams/identity/data_keys.py: RedisReadmitter)."""

    async def readmit(self, items: Sequence[tuple[Sequence[str], int]]) -> list[list[str]]: ...


class MemoryReadmitter:
    """The same on the in-memory twin."""

    def __init__(self, graph: MemoryIdentityGraph) -> None:
        self.graph = graph

    async def readmit(self, items: Sequence[tuple[Sequence[str], int]]) -> list[list[str]]:
        return [self.graph.readmit(digests, ts) for digests, ts in items]
