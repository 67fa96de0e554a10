"""Entry point of the ``touchpoint`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from streams.cli.errors import UsageError, environment_error, option_error
from streams.settings import DEV_PII_KEY, Settings, SettingsError

__all__ = ["main"]

# Each module exposes add_parser(subparsers) and sets args.run = callable(args, settings) -> int.
# Development tools that run workers in throwaway namespaces: the public PII key is fine there.
_DEV_COMMANDS = ("demo", "bench")
_COMMANDS = ("stack", "worker", "send", "idle", "dlq", "simulate", "demo", "detect", "forecast", "demand", "erase", "alerts", "profile", "collect", "bench", "identity",
             "export", "audience", "destinations")


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
    problem = option_error(args)
    if problem:
        print(f"touchpoint {args.command}: {problem}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"touchpoint: {exc}", file=sys.stderr)
        return 2
    if args.command in _DEV_COMMANDS and settings.pii_key == DEV_PII_KEY and not settings.dev_mode:
        settings = settings.with_(dev_mode=True)  # passed on to the workers these commands start
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
    except Exception as exc:  # noqa: BLE001 - an unreachable Kafka/Redis or a missing file: one line, not a traceback
        message = environment_error(exc, settings)
        if message is None:
            raise
        print(f"touchpoint {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
