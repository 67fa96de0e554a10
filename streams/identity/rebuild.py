"""Rebuild the Redis identity graph from Kafka (Redis is a materialised view, Kafka is the log).

Sources, both kept in Kafka:

- ``<ns>.identity.changes`` (retention: forever): every created/linked/merged/quarantined/erased/split
  record rebuilds the graph keys (``id:``, ``p:``, ``pm:``, ``pe:``, ``pl:``, ``fwd:``, ``seq``,
  ``quar:``, ``deg:``, ``lnk:``, ``supp:``) and the stored replies of non-trivial resolutions (``dres:``);
- ``<ns>.profile-events``: every emitted event carries its ``message_id`` and its source claim
  (``topic/partition/offset``) and its origin ``profile_id``, which restore the dedup keys
  (``dedup:``, with the first reported profile of a trivial resolution) of applied events, and
  their entries in the dedup window (``dw:``, in the slice of the record's Kafka timestamp, which
  is a little later than the resolution's: an entry may live up to one slice longer than it did).

The result does not depend on the order records are read in (the topic is partitioned by profile
id, so there is no global order): identifiers attach to the profile that linked them, merges form
a forest whose roots are the live profiles, erasures remove whole trees. Audit records that were
written twice (a batch redelivered after a crash replays its stored reply) are applied once.

What the log does not hold, and therefore is not rebuilt (see docs/reliability.md):

- dedup keys and window entries of events that were dropped as ``erased`` or dead-lettered as ``no_identifier``
  (neither is emitted anywhere with its claim): a replay of such a record is dropped or
  dead-lettered again, which changes no profile;
- the direction of a merge bridge in ``pe:`` when the anchor was the loser's identifier
  (``why()`` treats links as undirected, so its answers are the same);
- TTLs are restored relative to each record's Kafka timestamp.

Workers must be stopped while rebuilding: on an empty graph they would create fresh profiles.
The folding itself is pure: streams/identity/graph_image.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from streams.events.model import dedup_id
from streams.identity import keys as K
from streams.identity.graph_image import GraphImage, build_image

__all__ = ["GraphImage", "build_image", "write_image", "rebuild", "RebuildError"]


class RebuildError(RuntimeError):
    """The graph cannot be rebuilt as asked (e.g. the namespace is not empty)."""


async def _namespace_keys(redis: Redis, prefix: str, limit: int = 10_000_000) -> AsyncIterator[bytes]:
    n = 0
    async for key in redis.scan_iter(match=prefix.replace("*", r"\*").replace("?", r"\?") + "*", count=1000):
        yield key
        n += 1
        if n >= limit:
            return


async def write_image(redis: Redis, namespace: str, img: GraphImage, force: bool = False, chunk: int = 2000) -> None:
    """Write the image under ``<namespace>:``; refuses a non-empty namespace unless ``force``
    (which first deletes every key of the namespace)."""
    prefix = namespace + ":"
    existing: list[bytes] = []
    async for key in _namespace_keys(redis, prefix):
        existing.append(key)
        if not force:
            raise RebuildError(f"Redis already holds keys of namespace {namespace!r} (e.g. {key!r}); "
                               "stop the workers and pass --force to replace them")
    for i in range(0, len(existing), chunk):
        await redis.unlink(*existing[i:i + chunk])
    pipe = redis.pipeline(transaction=False)
    pending = 0

    async def flush(final: bool = False) -> None:
        nonlocal pipe, pending
        if pending and (final or pending >= chunk):
            await pipe.execute()
            pipe = redis.pipeline(transaction=False)
            pending = 0

    for key, value in img.strings.items():
        ttl = img.ttl_s.get(key)
        pipe.set(prefix + key, value, ex=ttl) if ttl else pipe.set(prefix + key, value)
        pending += 1
        await flush()
    for key, mapping in img.hashes.items():
        if mapping:
            pipe.hset(prefix + key, mapping=mapping)
            pending += 1
            await flush()
    for key, fields in img.window.items():
        pipe.hset(prefix + key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(prefix + key, img.ttl_s[key])
        pending += 2
        await flush()
    for key, items in img.lists.items():
        pipe.rpush(prefix + key, *items)
        pending += 1
        await flush()
    for key, members in img.sets.items():
        pipe.sadd(prefix + key, *sorted(members))
        pending += 1
        await flush()
    await flush(final=True)


async def rebuild(settings: Any, force: bool = False, timeout_s: float = 600.0) -> dict[str, int]:
    """Read both topics to their current end and write the graph; returns counts."""
    from streams.identity.data_keys import key_value, load_keyring, read_changes
    from streams.kafka.reading import read_to_end
    from streams.kafka.topics import PROFILE_EVENTS
    from streams.profiles.bundle import decoded_items

    def ts(record: Any) -> int:
        return int(record.timestamp) if record.timestamp is not None and record.timestamp >= 0 else time.time_ns() // 1_000_000

    ring = await load_keyring(settings, timeout_s)
    changes = await read_changes(settings, timeout_s, ring, strict=True)  # identifiers opened; shredded ones read "erased"
    events: list[tuple[dict[str, Any], int]] = []
    async for r in read_to_end(settings, settings.topic(PROFILE_EVENTS), timeout_s):
        if not r.value:
            continue
        for _, value in decoded_items(r.key, r.value):  # ingest bundles events (streams/profiles/bundle.py)
            if isinstance(value, dict) and "control" not in value:
                mid = value.get("message_id")  # dedup keys are per source scope (events.model.dedup_id)
                events.append(({"message_id": dedup_id(mid, value.get("scope")) if mid else mid, "source": value.get("source"),
                                "profile_id": value.get("profile_id")}, ts(r)))
    from streams.identity.rules_file import rules_from_settings

    img = build_image(changes, events, rules_from_settings(settings), settings.dedup_ttl_s,
                      dedup_window_s=settings.dedup_window_s, dedup_shard_bits=settings.dedup_shard_bits)
    # the data keys too, else the workers would file new ones and the old records become unreadable
    for digest, (kid, key) in ring.by_digest.items():
        img.strings[K.DATA_KEY + digest] = key_value(kid, key)
    img.stats["data_keys"] = len(ring.by_digest)
    redis = Redis.from_url(settings.redis_url)
    try:
        await write_image(redis, settings.namespace, img, force=force)
    finally:
        await redis.aclose()
    return img.stats
