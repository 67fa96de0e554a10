"""``touchpoint worker``: run one worker; more workers = more processes with the same settings."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
from typing import TYPE_CHECKING

from streams.settings import Settings

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run one worker (ingest, identity, profiles, demand) with its HTTP server")
    p.add_argument("--web-port", type=int, help="HTTP port (default TOUCHPOINT_WEB_PORT)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import create_app
    from streams.kafka.limits import check_record_limits
    from streams.kafka.topics import ensure_topics

    settings.require_pii_key()  # before anything connects: a one-line refusal, exit 2
    from streams.cli.errors import UsageError
    from streams.kafka.delivery import check_pinned_versions

    problems = check_pinned_versions()  # the private Faust/aiokafka APIs we use hold for these only
    if problems:
        raise UsageError("the worker relies on Faust/aiokafka internals of the pinned versions: " + "; ".join(problems)
                         + " (reinstall with `make setup`)")
    use_event_loop(settings)
    if args.web_port is not None:
        settings = settings.with_(web_port=args.web_port)
    check_listen(settings.web_host, settings.web_port)
    # Create our topics (with their retention) before Faust declares them with defaults.
    asyncio.run(ensure_topics(settings))
    asyncio.run(check_record_limits(settings))  # records the broker would refuse: exit 2 (issue 21)
    asyncio.run(check_redis_permissions(settings))  # an ACL that refuses the scripts' commands: exit 2
    log.info("settings: %s", settings.describe())
    app, _ = create_app(settings)
    from streams.observability.logs import limit_repeats

    # A broker outage is one line per 10 s per message, not thousands (loggers are created here if
    # their modules are not imported yet; the modules then get these same logger objects).
    limit_repeats(("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.consumer.fetcher",
                   "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender"))
    if settings.gc_threshold > 0:
        # Measured: 700 -> 50,000 took ~10% of the worker's CPU per event off (docs/performance.md);
        # cyclic garbage is still collected, just in larger, rarer rounds.
        gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])
    build_worker(app, settings).execute_from_commandline()
    return 0


async def check_redis_permissions(settings: Settings) -> None:
    """A Redis ACL user that may not run the identity scripts' commands as a one-line error now,
    not an error on every event after start-up."""
    from redis.asyncio import Redis

    from streams.cli.errors import UsageError
    from streams.identity.redis_graph import script_permission_problem

    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    try:
        problem = await script_permission_problem(redis, settings.namespace)
    finally:
        await redis.aclose()
    if problem:
        raise UsageError(f"the Redis user may not run the identity scripts' commands ({problem}): grant it "
                         f"+@read +@write +@scripting +@connection +time on ~{settings.namespace}:* (docs/reliability.md)")


def check_listen(host: str, port: int) -> None:
    """A busy or forbidden HTTP port as a one-line error now, not a Faust crash after start-up."""
    import socket

    from streams.cli.errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --web-port or TOUCHPOINT_WEB_PORT)") from None


def use_event_loop(settings: Settings) -> None:
    """Install the event loop policy the settings ask for; call it before building the app, so
    nothing declared with the app can bind it to another loop."""
    if settings.event_loop == "uvloop":
        # Every record is several futures and callbacks on the loop: libuv's loop runs them for
        # less CPU than the standard library's (figures in docs/performance.md).
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def build_worker(app: faust.App, settings: Settings) -> faust.Worker:
    """The Faust worker of ``app``, on the loop of the policy installed by :func:`use_event_loop`."""
    import faust

    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    if settings.event_loop == "uvloop" and "uvloop" not in type(worker.loop).__module__:
        # Something resolved the app's loop before the policy was set (once: a table's store
        # built at declaration time), which silently costs ~7% of the CPU per record.
        log.warning("the worker runs on %s, not uvloop: its loop was resolved too early", type(worker.loop).__name__)
    return worker
