"""``touchpoint destinations list`` / ``touchpoint destinations redrive [--destination NAME]``."""

from __future__ import annotations

import argparse

import orjson

from streams.activation.definitions import load
from streams.cli.errors import UsageError
from streams.settings import Settings

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("destinations", help="destinations of the definitions file; redrive their dead letters")
    dsub = p.add_subparsers(dest="destinations_command", required=True, metavar="SUBCOMMAND")
    ls = dsub.add_parser("list", help="the destinations of TOUCHPOINT_TRAITS as JSON lines")
    ls.set_defaults(run=list_destinations)
    rd = dsub.add_parser("redrive", help="send the dead-lettered deliveries again (each once; failing ones are dead-lettered again)")
    rd.add_argument("--destination", metavar="NAME", help="only this destination (default: all)")
    rd.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    rd.set_defaults(run=redrive)


def list_destinations(args: argparse.Namespace, settings: Settings) -> int:
    for d in load(settings.traits).destinations:
        print(orjson.dumps({"name": d.name, "kind": d.kind, "url": d.url or None, "topic": d.topic or None, "streams": list(d.streams),
                            "audiences": sorted(d.audiences) if d.audiences is not None else None, "purpose": d.purpose,
                            "max_attempts": d.max_attempts}).decode())
    return 0


async def redrive(args: argparse.Namespace, settings: Settings) -> int:
    from streams.activation.forwarder import redrive as run_redrive

    dests = load(settings.traits).destinations
    if args.destination:
        dests = tuple(d for d in dests if d.name == args.destination)
        if not dests:
            raise UsageError(f"no destination {args.destination!r} in {settings.traits or 'TOUCHPOINT_TRAITS (unset)'}")
    if any(d.kind == "webhook" for d in dests) and not settings.webhook_secret:
        raise UsageError("TOUCHPOINT_WEBHOOK_SECRET is required to sign webhook requests")
    again = 0
    for d in dests:
        ok, failed = await run_redrive(settings, d, args.timeout)
        again += failed
        print(f"{d.name}: {ok} delivered, {failed} dead-lettered again")
    return 1 if again else 0
