"""``touchpoint worker``: run one worker; more workers = more processes with the same settings."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging

from streams.settings import Settings

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run one worker (ingest, identity, profiles, demand) with its HTTP server")
    p.add_argument("--web-port", type=int, help="HTTP port (default TOUCHPOINT_WEB_PORT)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from streams.app import create_app
    from streams.kafka.topics import ensure_topics

    if args.web_port:
        settings = settings.with_(web_port=args.web_port)
    # Create our topics (with their retention) before Faust declares them with defaults.
    asyncio.run(ensure_topics(settings))
    log.info("settings: %s", settings.describe())
    app, _ = create_app(settings)
    from streams.observability.logs import limit_repeats

    # A broker outage is one line per 10 s per message, not thousands (loggers are created here if
    # their modules are not imported yet; the modules then get these same logger objects).
    limit_repeats(("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.consumer.fetcher",
                   "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender"))
    if settings.event_loop == "uvloop":
        # Every record is several futures and callbacks on the loop: libuv's loop runs them for
        # less CPU than the standard library's (figures in docs/performance.md).
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if settings.gc_threshold > 0:
        # Measured: 700 -> 50,000 took ~10% of the worker's CPU per event off (docs/performance.md);
        # cyclic garbage is still collected, just in larger, rarer rounds.
        gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
