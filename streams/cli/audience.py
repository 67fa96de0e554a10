"""``touchpoint audience list`` / ``touchpoint audience members NAME``.

``list`` shows the audiences (and computed traits) of the definitions file ``TOUCHPOINT_TRAITS``,
validated as a worker validates it. ``members`` reads ``<ns>.audiences`` from its beginning and
prints the profile ids whose latest change (highest sequence per profile and audience) is an entry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

import orjson

from streams.activation.definitions import load
from streams.cli.errors import UsageError
from streams.kafka.reading import read_to_end
from streams.kafka.topics import AUDIENCES
from streams.settings import Settings

__all__ = ["add_parser", "current_members"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audience", help="audiences of the definitions file and their members")
    asub = p.add_subparsers(dest="audience_command", required=True, metavar="SUBCOMMAND")
    ls = asub.add_parser("list", help="the audiences and computed traits of TOUCHPOINT_TRAITS")
    ls.add_argument("--json", action="store_true", help="print the definitions as one JSON object")
    ls.set_defaults(run=list_audiences)
    mem = asub.add_parser("members", help="current members of one audience, one profile id a line (from the audiences topic)")
    mem.add_argument("name", metavar="NAME")
    mem.add_argument("--json", action="store_true", help="JSON lines {profile_id, since} instead of bare ids")
    mem.set_defaults(run=members)


def list_audiences(args: argparse.Namespace, settings: Settings) -> int:
    defs = load(settings.traits)
    if args.json:
        print(orjson.dumps(defs.describe()).decode())
        return 0
    if not defs.audiences and not defs.traits:
        print("no definitions (set TOUCHPOINT_TRAITS to a definitions file; docs/activation.md)")
        return 0
    for a in defs.audiences:
        print(f"{a.name}  [consent: {a.purpose}]  when {a.when}" + (f"  -- {a.description}" if a.description else ""))
    for t in defs.traits:
        window = f" over {t.window_days} days" if t.window_days else ""
        where = " where " + ", ".join(f"{k} in {sorted(v)}" for k, v in t.where) if t.where else ""
        of = f" of {t.of or t.source}"
        print(f"trait {t.name}: {t.kind}{of}{window}{where}")
    return 0


def current_members(records: Iterable[dict[str, Any]], audience: str) -> dict[str, int]:
    """``{profile_id: ts_ms entered}`` of the audience's members from its change records."""
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("audience") != audience:
            continue
        pid = r["profile_id"]
        if pid not in latest or r["sequence"] > latest[pid]["sequence"]:
            latest[pid] = r
    return {pid: r["ts_ms"] for pid, r in sorted(latest.items()) if r["change"] == "entered"}


async def members(args: argparse.Namespace, settings: Settings) -> int:
    defs = load(settings.traits)
    names = [a.name for a in defs.audiences]
    if args.name not in names:
        raise UsageError(f"no audience {args.name!r} in {settings.traits or 'TOUCHPOINT_TRAITS (unset)'}; known: {', '.join(names) or 'none'}")

    async def records() -> list[dict[str, Any]]:
        out = []
        async for record in read_to_end(settings, settings.topic(AUDIENCES)):
            if record.value:
                out.append(orjson.loads(record.value))
        return out

    found = current_members(await records(), args.name)
    for pid, since in found.items():
        sys.stdout.write((orjson.dumps({"profile_id": pid, "since": since}).decode() if args.json else pid) + "\n")
    return 0
