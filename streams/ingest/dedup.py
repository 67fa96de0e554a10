"""Deduplication by messageId in Redis: one pipelined round trip per batch.

Each key holds the *claim* of the first record that carried the messageId (its source
topic/partition/offset). A record whose messageId is claimed by another record is a duplicate.
A record that finds its own claim is the same record delivered again after a crash before the
offset commit: it is processed again, never dropped (invariant 1).
"""

from __future__ import annotations

from typing import Sequence

from redis.asyncio import Redis

__all__ = ["RedisDedup", "MemoryDedup"]


class RedisDedup:
    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix + "dedup:"
        self._ttl_s = ttl_s

    async def first_seen(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (message_id, claim): True when this record is the one to apply."""
        if not items:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for message_id, claim in items:
            # SET ... NX GET returns the old value when the key exists (Redis >= 7.0)
            pipe.set(self._prefix + message_id, claim, nx=True, ex=self._ttl_s, get=True)
        results = await pipe.execute()
        # A repeat inside the same batch finds the first record's claim, so it is a duplicate too.
        return [old is None or (old.decode() if isinstance(old, bytes) else old) == claim
                for (_, claim), old in zip(items, results)]


class MemoryDedup:
    """In-memory twin of :class:`RedisDedup` with the same claim rule, for tests of pure wiring."""

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}

    async def first_seen(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        out = []
        for message_id, claim in items:
            old = self.claims.setdefault(message_id, claim)
            out.append(old == claim)
        return out
