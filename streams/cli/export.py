"""``touchpoint export --id TYPE:VALUE``: everything held about a person, as JSON.

The person is found by any identifier (raw emails and phones accepted, hashed like ingest does).
Printed: the live profile id and every profile id merged into it, the identifiers the graph
holds (emails and phones as the keyed hashes that are all we keep), which of them are
quarantined, the profile as folded by the profiles stage (read from its table changelog), and
every audit record on ``identity.changes`` about the person (their profile ids or identifiers),
opened with the data keys of ``identity.keys`` (an identifier of someone erased since reads
"erased"), and the consent flags per purpose as the profile holds them.
Reads three topics to their end: seconds on a small installation, longer on a large one.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from streams.cli.errors import UsageError
from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="everything held about a person, as JSON (found by any identifier)")
    p.add_argument("--id", dest="ident", metavar="TYPE:VALUE", required=True, help="any identifier, raw (e.g. email:Ann@Example.com)")
    p.add_argument("--timeout", type=float, default=120.0, help="longest time to read each topic, in seconds")
    p.set_defaults(run=run_export)


async def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from redis.asyncio import Redis

    from streams.cli.profile import dump_profiles
    from streams.identity.data_keys import read_changes
    from streams.identity.identifiers import stored_identifier
    from streams.identity.model import fmt
    from streams.identity.redis_graph import RedisIdentityGraph
    from streams.identity.rules_file import rules_from_settings
    from streams.ingest.pii import PiiHasher
    from streams.profiles.profile import decode, is_tomb_bytes, render

    rules = rules_from_settings(settings)
    try:
        ident = stored_identifier(args.ident, PiiHasher(settings.pii_key), settings.default_phone_region, rules)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10, decode_responses=True)
    try:
        graph = RedisIdentityGraph(redis, settings.namespace, rules, settings.dedup_ttl_s)
        pid = await graph.lookup(ident)
        idents = await graph.identifiers_of(pid) if pid else []
        merged = sorted(await redis.smembers(f"{settings.namespace}:pl:{pid}")) if pid else []
        quarantined = [fmt(i) for i in idents if await redis.exists(f"{settings.namespace}:quar:{fmt(i)}")]
    finally:
        await redis.aclose()
    if pid is None:
        print(orjson.dumps({"id": fmt(ident), "profile_id": None, "identifiers": [], "profile": None, "audit": []}).decode())
        return 1
    pids = {pid, *merged}
    names = {fmt(i) for i in idents}
    audit: list[dict[str, Any]] = []
    for rec, _ in await read_changes(settings, args.timeout):  # identifiers opened with their data keys
        if rec.get("profile_id") in pids or rec.get("from_profile_id") in pids or names & set(rec.get("identifiers") or ()):
            audit.append(rec)
    value = (await dump_profiles(settings)).get(pid.encode())
    profile = render(pid, decode(value)) if value is not None and not is_tomb_bytes(value) else None
    consent = (profile or {}).get("consent") or {}
    print(orjson.dumps({"id": fmt(ident), "profile_id": pid, "merged_from": merged, "identifiers": [fmt(i) for i in idents],
                        "quarantined": quarantined, "consent": consent, "profile": profile, "audit": audit}).decode())
    return 0
