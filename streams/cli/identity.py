"""``touchpoint identity``: rebuild the graph from Kafka, explain a pair, check a rules file.

- ``rebuild``: Redis is a materialised view of ``<ns>.identity.changes`` (and of the claims
  carried by ``<ns>.profile-events``); after losing Redis, stop the workers, run this, start them.
- ``why A B``: the chain linking two identifiers, or the rule that keeps them apart with the
  audit records behind it (read from ``identity.changes``).
- ``rules --check FILE``: validate a rules file (one-line error, exit 2) and print the rules.
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
                pids.update(x.decode() if isinstance(x, bytes) else x for x in await redis.smembers(f"{settings.namespace}:pl:{pid}"))
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
