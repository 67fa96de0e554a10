"""``touchpoint identity``: rebuild the graph from Kafka, explain a pair, check a rules file.

- ``rebuild``: Redis is a materialised view of ``<ns>.identity.changes`` (and of the claims
  carried by ``<ns>.profile-events``); after losing Redis, stop the workers, run this, start them.
- ``why A B``: the chain linking two identifiers, or the rule that keeps them apart with the
  audit records behind it (read from ``identity.changes``).
- ``rules --check FILE``: validate a rules file (one-line error, exit 2) and print the rules.
- ``split``: detach an identifier, cut a recorded link or undo a merge; both profiles are folded
  again (streams/identity/split_person.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from streams.cli.errors import UsageError
from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identity", help="identity graph maintenance")
    isub = p.add_subparsers(dest="identity_command", metavar="SUBCOMMAND", required=True)
    rb = isub.add_parser("rebuild", help="rebuild the Redis identity graph from the identity.changes topic (stop the workers first)")
    rb.add_argument("--force", action="store_true", help="replace the namespace's existing Redis keys (default: refuse if any exist)")
    rb.add_argument("--timeout", type=float, default=600.0, help="longest time to read each topic, in seconds")
    rb.set_defaults(run=run_rebuild)
    why = isub.add_parser("why", help="why two identifiers are one person, or which rule keeps them apart")
    why.add_argument("a", metavar="TYPE:VALUE")
    why.add_argument("b", metavar="TYPE:VALUE")
    why.add_argument("--no-records", action="store_true", help="do not read identity.changes for the audit records")
    why.add_argument("--timeout", type=float, default=60.0, help="longest time to read identity.changes, in seconds")
    why.set_defaults(run=run_why)
    sp = isub.add_parser("split", help="undo a wrong link: detach an identifier, cut a recorded link or undo a merge")
    how = sp.add_mutually_exclusive_group(required=True)
    how.add_argument("--id", metavar="TYPE:VALUE", help="detach this identifier into a profile of its own")
    how.add_argument("--link", nargs=2, metavar=("A", "B"), help="cut the recorded link between A and B (a step of identity why); B's side moves")
    how.add_argument("--merge", metavar="PROFILE_ID", help="undo the merge that folded PROFILE_ID away (from_profile_id of its merged record)")
    sp.add_argument("--actor", default=None, help="who splits (recorded on identity.changes; default: the login name)")
    sp.add_argument("--timeout", type=float, default=600.0, help="longest time to read each topic, in seconds")
    sp.set_defaults(run=run_split)
    rules = isub.add_parser("rules", help="validate an identity rules file (TOML)")
    rules.add_argument("--check", metavar="FILE", required=True, help="the rules file to validate")
    rules.set_defaults(run=run_rules_check)


async def run_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from streams.identity.rebuild import RebuildError, rebuild

    started = time.monotonic()
    try:
        stats = await rebuild(settings, force=args.force, timeout_s=args.timeout)
    except RebuildError as exc:
        print(f"touchpoint identity rebuild: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps({**stats, "seconds": round(time.monotonic() - started, 2)}).decode())
    return 0


def run_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    from streams.identity.rules_file import RulesFileError, load_rules

    try:
        rules = load_rules(args.check)
    except RulesFileError as exc:
        raise UsageError(str(exc)) from None
    print(orjson.dumps(rules_summary(rules)).decode())
    return 0


def rules_summary(rules: Any) -> dict[str, Any]:
    return {"ok": True, "priority": list(rules.priority), "unique_types": sorted(rules.unique_types),
            "no_merge_types": sorted(rules.no_merge_types), "per_event_types": sorted(rules.per_event_types),
            "limits": dict(sorted(rules.limits.items())), "default_limit": rules.default_limit,
            "blocked_values": len(rules.blocked_values), "blocked_patterns": len(rules.blocked_patterns),
            "type_blocked": {t: len(rules.type_blocked_values.get(t, ())) + len(rules.type_blocked_patterns.get(t, ()))
                             for t in sorted(set(rules.type_blocked_values) | set(rules.type_blocked_patterns))},
            "phone_require_valid": rules.phone_require_valid, "refused_phone_types": list(rules.refused_phone_types),
            "supernode_max_merges": rules.supernode_max_merges, "supernode_max_links": rules.supernode_max_links,
            "supernode_links_by_type": dict(rules.supernode_links_by_type)}


async def run_why(args: argparse.Namespace, settings: Settings) -> int:
    from redis.asyncio import Redis

    from streams.identity.explain import related_records
    from streams.identity.identifiers import explained_identifier
    from streams.identity.keys import Keys
    from streams.identity.redis_graph import RedisIdentityGraph
    from streams.identity.rules_file import rules_from_settings
    from streams.ingest.pii import PiiHasher

    rules = rules_from_settings(settings)
    hasher = PiiHasher(settings.pii_key)
    try:
        a = explained_identifier(args.a, hasher, settings.default_phone_region, rules)
        b = explained_identifier(args.b, hasher, settings.default_phone_region, rules)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        graph = RedisIdentityGraph(redis, settings.namespace, rules, settings.dedup_ttl_s)
        answer = await graph.explain(a, b)
        pids: set[str] = set()
        for pid in (answer["a_profile"], answer["b_profile"]):
            if pid:
                pids.update(x.decode() if isinstance(x, bytes) else x for x in await redis.smembers(Keys(settings.namespace).merged(pid)))
    finally:
        await redis.aclose()
    if not answer["linked"] and not args.no_records:
        from streams.identity.data_keys import read_changes
        from streams.kafka.reading import topic_exists
        from streams.kafka.topics import IDENTITY_CHANGES

        topic = settings.topic(IDENTITY_CHANGES)
        # opened with the data keys: an identifier of a person erased since reads "erased"
        records = [rec for rec, _ in await read_changes(settings, args.timeout)] if await topic_exists(settings, topic) else []
        answer["records"] = related_records(records, answer, pids)
    print(orjson.dumps(answer).decode())
    return 0


async def merge_pair(settings: Settings, loser: str, timeout_s: float) -> tuple[str, str]:
    """The pair of identifiers the ``merged`` record of ``loser`` names (read from identity.changes,
    opened with the data keys: a pair of someone erased since cannot be split)."""
    from streams.identity.data_keys import read_changes
    from streams.identity.sealing import is_erased
    from streams.kafka.reading import topic_exists
    from streams.kafka.topics import IDENTITY_CHANGES

    topic = settings.topic(IDENTITY_CHANGES)
    if await topic_exists(settings, topic):
        for rec, _ in await read_changes(settings, timeout_s):
            pair = rec.get("identifiers") or ()
            if rec.get("type") == "merged" and rec.get("from_profile_id") == loser and len(pair) == 2 and not any(map(is_erased, pair)):
                return pair[0], pair[1]
    raise UsageError(f"--merge {loser}: no merged record of that profile id on {topic}")


async def run_split(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from streams.identity.data_keys import RedisKeyStore
    from streams.identity.identifiers import stored_identifier
    from streams.identity.model import parse
    from streams.identity.redis_graph import RedisIdentityGraph
    from streams.identity.rules_file import rules_from_settings
    from streams.identity.sealing import AuditSealer
    from streams.identity.split import SplitError
    from streams.identity.split_person import split_person
    from streams.ingest.pii import PiiHasher
    from streams.kafka.client import client_options
    from streams.kafka.topics import IDENTITY_CHANGES, IDENTITY_KEYS, PROFILE_EVENTS, ensure_topics

    settings.require_pii_key()  # with another key than the workers', the hashes would match nobody
    rules = rules_from_settings(settings)
    hasher = PiiHasher(settings.pii_key)

    def ident(text: str) -> Any:
        try:
            return stored_identifier(text, hasher, settings.default_phone_region, rules)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    cut = detach = None
    if args.id:
        detach = ident(args.id)
    elif args.link:
        cut = (ident(args.link[0]), ident(args.link[1]))
    else:
        a, b = await merge_pair(settings, args.merge, args.timeout)
        cut = (parse(a), parse(b))  # as stored (hashed where they are)
    actor = args.actor or getpass.getuser()
    await ensure_topics(settings)
    redis = Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        graph = RedisIdentityGraph(redis, settings.namespace, rules, settings.dedup_ttl_s)

        async def send_change(key: bytes, value: bytes) -> Any:
            return await producer.send_and_wait(settings.topic(IDENTITY_CHANGES), value=value, key=key)

        async def send_control(key: bytes, value: bytes) -> Any:
            return await producer.send_and_wait(settings.topic(PROFILE_EVENTS), value=value, key=key)

        async def send_key(key: bytes, value: bytes | None) -> Any:
            return await producer.send_and_wait(settings.topic(IDENTITY_KEYS), value=value, key=key)

        sealer = AuditSealer(RedisKeyStore(redis, settings.namespace), settings.pii_key, send_key)
        try:
            out = await split_person(graph, settings, actor, send_change, send_control, time.time_ns() // 1_000_000,
                                     cut=cut, detach=detach, timeout_s=args.timeout, seal=sealer.seal)
            await sealer.confirm()  # every send above was acknowledged
        except SplitError as exc:
            print(f"touchpoint identity split: refused: {exc}", file=sys.stderr)
            return 1
    finally:
        await producer.stop()
        await redis.aclose()
    print(orjson.dumps(out).decode())
    return 0
