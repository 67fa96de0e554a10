"""Entry point of the ``touchpoint`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from streams.cli.errors import UsageError
from streams.settings import Settings, SettingsError

__all__ = ["main"]

# Each module exposes add_parser(subparsers) and sets args.run = callable(args, settings) -> int.
_COMMANDS = ("stack", "worker", "send", "idle", "dlq", "simulate", "demo", "detect", "forecast", "demand", "erase", "alerts", "profile", "collect", "bench", "identity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="touchpoint", description="Touchpoint Streams: real-time customer data platform core on Kafka.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in _COMMANDS:
        module = importlib.import_module(f"streams.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"touchpoint: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command != "worker":  # client chatter is noise for one-shot commands
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        result = args.run(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except (UsageError, SettingsError) as exc:
        print(f"touchpoint {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
