"""``touchpoint erase --id TYPE:VALUE``: erase a person everywhere (identity graph, profiles)."""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from streams.identity.data_keys import RedisKeyStore
from streams.identity.erasure import Shredder, erase_person
from streams.identity.identifiers import RefusedIdentifier, legacy_forms, stored_identifier
from streams.identity.redis_graph import RedisIdentityGraph
from streams.identity.rules_file import rules_from_settings
from streams.ingest.pii import PiiHasher
from streams.kafka.client import client_options
from streams.kafka.topics import IDENTITY_CHANGES, IDENTITY_KEYS, PROFILE_EVENTS, ensure_topics
from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("erase", help="erase a person everywhere, found by any of their identifiers")
    p.add_argument("--id", required=True, metavar="TYPE:VALUE", help="any identifier of the person, raw (emails/phones as typed)")
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError

    settings.require_pii_key()  # with another key than the workers', the hashes would match nobody
    hasher = PiiHasher(settings.pii_key)
    legacy = legacy_forms(args.id, hasher, settings.default_phone_region) if ":" in args.id else []
    try:
        ident = stored_identifier(args.id, hasher, settings.default_phone_region, rules_from_settings(settings))
    except ValueError as exc:
        if not legacy or not isinstance(exc, RefusedIdentifier):
            raise UsageError(str(exc)) from None
        ident = None  # refused today, but an older version may have stored it
    await ensure_topics(settings)
    redis = Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        graph = RedisIdentityGraph(redis, settings.namespace, rules_from_settings(settings), settings.dedup_ttl_s)

        async def send_change(key: bytes, value: bytes) -> None:
            await producer.send_and_wait(settings.topic(IDENTITY_CHANGES), value=value, key=key)

        async def send_control(key: bytes, value: bytes) -> None:
            await producer.send_and_wait(settings.topic(PROFILE_EVENTS), value=value, key=key)

        async def send_key(key: bytes, value: bytes | None) -> None:
            await producer.send_and_wait(settings.topic(IDENTITY_KEYS), value=value, key=key)

        shredder = Shredder(RedisKeyStore(redis, settings.namespace), settings.pii_key, send_key)
        result = await erase_person(graph, ident, send_change, send_control, time.time_ns() // 1_000_000, legacy, shredder)
    finally:
        await producer.stop()
        await redis.aclose()
    if result.refused:
        print(f"touchpoint erase: refused ({result.refused}): {args.id.split(':', 1)[0]} values like this are never linked", file=sys.stderr)
        return 1
    print(orjson.dumps({"erased": result.profile_id is not None, "profile_id": result.profile_id,
                        "profile_ids": list(result.profile_ids), "identifiers": len(result.identifiers)}).decode())
    return 0
