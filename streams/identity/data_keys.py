"""Data keys of the identity audit trail in Redis and on ``<ns>.identity.keys`` (see sealing.py).

Redis ``<ns>:dk:<digest>`` -> ``<kid>:<base64 key>:<0|1>`` (1 = published on identity.keys). The
topic is compacted and keyed by the digest; a tombstone there is an erasure.
"""

from __future__ import annotations

import base64
from typing import Any

from redis.asyncio import Redis

from streams.identity import keys as K
from streams.identity.sealing import KeyRing, derive, new_key, open_record, open_suppressed

__all__ = ["RedisKeyStore", "RedisReadmitter", "load_keyring", "read_changes", "key_value"]

# Flag keys published only if each is still the value we created (an erasure may have deleted it,
# and a person who came back may have a new one since). One call for all of a commit's keys.
_CONFIRM = """
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.sub(v, -2) == ':0' then redis.call('SET', k, string.sub(v, 1, -2) .. '1') end
end
return 0
"""

# Create the missing keys (ARGV: a new value for each), first writer wins: another writer's value
# is returned and kept, false where ours was written. One call instead of one SET NX GET per key.
_CREATE = """
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then out[i] = v else redis.call('SET', k, ARGV[i]); out[i] = false end
end
return out
"""

# Round trips: one MGET per batch with audit records, one script call when some keys are missing,
# one per commit for the keys published since the last (each was a command of its own: ~10-15 us
# of client CPU per key in redis-py's pipeline).
_CHUNK = 1000  # keys per script call: a big batch does not hold Redis for long


# The way back (streams/identity/rights.py): readmit the suppression entries erased before the event.
_READMIT = """
local out, ts = {}, tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.match(v, '^%d+$') and v ~= '1' and tonumber(v) < ts then
    redis.call('SET', k, 'r' .. v)
    out[#out + 1] = i
  end
end
return out
"""


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else x


def key_value(kid: str, key: bytes, published: bool = True) -> str:
    """The value of ``dk:<digest>``."""
    return f"{kid}:{base64.b64encode(key).decode()}:{int(published)}"


def _parse(value: str) -> tuple[str, bytes, bool]:
    kid, key, flag = value.split(":")
    return kid, base64.b64decode(key), flag == "1"


class RedisKeyStore:
    """:class:`streams.identity.sealing.KeyStore` on Redis."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:{K.DATA_KEY}"
        self._confirm = redis.register_script(_CONFIRM)
        self._create = redis.register_script(_CREATE)

    async def get_or_create(self, digests: list[str]) -> dict[str, tuple[str, bytes, bool]]:
        keys = [self.prefix + d for d in digests]
        values = await self.redis.mget(keys)
        out: dict[str, tuple[str, bytes, bool]] = {}
        missing: list[tuple[str, str]] = []
        for d, v in zip(digests, values, strict=True):
            if v is None:
                kid, key = new_key()
                missing.append((d, key_value(kid, key, False)))
            else:
                out[d] = _parse(_s(v))
        for i in range(0, len(missing), _CHUNK):
            part = missing[i:i + _CHUNK]
            olds = await self._create(keys=[self.prefix + d for d, _ in part], args=[value for _, value in part])
            for (d, value), old in zip(part, olds, strict=True):
                out[d] = _parse(_s(old) if old else value)  # another writer may have won: take theirs
        return out

    async def mark_published(self, digests: list[str]) -> None:
        for i in range(0, len(digests), _CHUNK):
            await self._confirm(keys=[self.prefix + d for d in digests[i:i + _CHUNK]])

    async def delete(self, digests: list[str]) -> None:
        await self.redis.delete(*(self.prefix + d for d in digests))


async def load_keyring(settings: Any, timeout_s: float = 120.0) -> KeyRing:
    """The data keys on ``<ns>.identity.keys`` now (empty when the topic does not exist yet)."""
    from streams.kafka.reading import read_to_end, topic_exists
    from streams.kafka.topics import IDENTITY_KEYS

    topic = settings.topic(IDENTITY_KEYS)
    if not await topic_exists(settings, topic):
        return KeyRing()
    records = [(r.key, r.value) async for r in read_to_end(settings, topic, timeout_s)]
    return KeyRing.from_records(derive(settings.pii_key, b"identity-keys-kek-v1"), records)


async def read_changes(settings: Any, timeout_s: float = 120.0, ring: KeyRing | None = None,
                       strict: bool = False) -> list[tuple[dict[str, Any], int]]:
    """Every record of ``<ns>.identity.changes`` opened: ``(record, Kafka timestamp ms)``.

    Identifiers whose data key was shredded read ``"erased"`` (the record counts them in
    ``"unreadable"``); an erasure's sealed suppression list is opened with the ledger key.
    Raises MissingTopicError when the topic does not exist; with ``strict`` (rebuild) a
    suppression list that does not open with this PII key is a SettingsError (one line).
    """
    import time

    import orjson

    from streams.kafka.reading import read_to_end
    from streams.kafka.topics import IDENTITY_CHANGES
    from streams.settings import SettingsError

    ring = ring if ring is not None else await load_keyring(settings, timeout_s)
    ledger = derive(settings.pii_key, b"erasure-ledger-v1")
    out: list[tuple[dict[str, Any], int]] = []
    async for r in read_to_end(settings, settings.topic(IDENTITY_CHANGES), timeout_s):
        if not r.value:
            continue
        rec = open_record(orjson.loads(r.value), ring)
        if rec.get("type") in ("erased", "readmitted") and "suppressed" in rec:
            try:
                rec["suppressed"] = open_suppressed(ledger, rec["suppressed"])
            except ValueError as exc:  # another PII key: rebuild must stop (the suppressions would be lost)
                if strict:
                    raise SettingsError(f"{settings.topic(IDENTITY_CHANGES)} at {r.partition}/{r.offset}: {exc}") from None
                rec["suppressed"], rec["unreadable"] = [], rec.get("unreadable", 0) + 1
        ts = int(r.timestamp) if r.timestamp is not None and r.timestamp >= 0 else time.time_ns() // 1_000_000
        out.append((rec, ts))
    return out


class RedisReadmitter:
    """:class:`streams.identity.rights.Readmitter` on Redis: one pipelined round trip per batch."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:{K.SUPP}"
        self._script = redis.register_script(_READMIT)

    async def readmit(self, items: Any) -> list[list[str]]:
        if not items:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for digests, ts in items:
            await self._script(keys=[self.prefix + d for d in digests], args=[str(ts)], client=pipe)
        replies = await pipe.execute()
        return [[digests[int(i) - 1] for i in reply] for (digests, _), reply in zip(items, replies, strict=True)]
