"""The Redis key store of the audit trail's data keys (streams/identity/data_keys.py), on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from streams.identity import data_keys
from streams.identity.data_keys import RedisKeyStore, key_value
from tests.fixtures.stack import run

pytestmark = pytest.mark.integration


def test_keys_are_created_once_first_writer_wins_and_only_our_value_is_marked_published(settings, monkeypatch) -> None:
    monkeypatch.setattr(data_keys, "_CHUNK", 3)  # several script calls per batch

    async def scenario() -> None:
        redis = Redis.from_url(settings.redis_url)
        try:
            store, other = RedisKeyStore(redis, settings.namespace), RedisKeyStore(redis, settings.namespace)
            theirs = key_value("kid-theirs", b"t" * 16, False)
            await redis.set(store.prefix + "d2", theirs)  # another writer created d2 first
            got = await store.get_or_create([f"d{i}" for i in range(8)])
            assert got["d2"] == ("kid-theirs", b"t" * 16, False)
            assert len({kid for kid, _, _ in got.values()}) == 8 and not any(p for _, _, p in got.values())
            assert await other.get_or_create([f"d{i}" for i in range(8)]) == got  # created once: the same keys
            # an erasure deleted d5, the person came back: a new key, created after our confirm was decided
            await redis.delete(store.prefix + "d5")
            await store.mark_published([f"d{i}" for i in range(8)])
            again = await store.get_or_create([f"d{i}" for i in range(8)])
            assert all(again[f"d{i}"] == (*got[f"d{i}"][:2], True) for i in range(8) if i != 5)
            assert again["d5"][0] != got["d5"][0] and again["d5"][2] is False  # a new key, not marked published
            await store.delete([f"d{i}" for i in range(8)])
            assert await redis.exists(*(store.prefix + f"d{i}" for i in range(8))) == 0
        finally:
            await redis.aclose()

    run(scenario())
