"""``touchpoint identity rebuild``: rebuild the Redis identity graph from Kafka.

Redis is a materialised view of ``<ns>.identity.changes`` (and of the claims carried by
``<ns>.profile-events``); after losing Redis, stop the workers, run this, start the workers.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identity", help="identity graph maintenance")
    isub = p.add_subparsers(dest="identity_command", metavar="SUBCOMMAND", required=True)
    rb = isub.add_parser("rebuild", help="rebuild the Redis identity graph from the identity.changes topic (stop the workers first)")
    rb.add_argument("--force", action="store_true", help="replace the namespace's existing Redis keys (default: refuse if any exist)")
    rb.add_argument("--timeout", type=float, default=600.0, help="longest time to read each topic, in seconds")
    rb.set_defaults(run=run_rebuild)


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
