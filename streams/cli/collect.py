"""``touchpoint collect``: the Segment-compatible HTTP collector (see docs/collector.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from streams.cli.errors import UsageError
from streams.collector.app import CollectorConfig, create_app
from streams.collector.publisher import KafkaPublisher
from streams.collector.server import ConnectionLimit, start_server
from streams.settings import Settings

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="Segment-compatible HTTP collector (POST /v1/track, /v1/batch, ...) publishing to the input topic")
    p.add_argument("--host", help="address to bind (default: TOUCHPOINT_COLLECTOR_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default: TOUCHPOINT_COLLECTOR_PORT, 8088)")
    p.add_argument("--allow-no-auth", action="store_true",
                   help="accept requests without a valid write key when TOUCHPOINT_WRITE_KEYS is empty (local testing only)")
    p.set_defaults(run=run)


def config_for(args: argparse.Namespace, settings: Settings) -> CollectorConfig:
    """The collector's configuration, refusing to run open by accident."""
    config = CollectorConfig.from_settings(settings, allow_no_auth=args.allow_no_auth, host=args.host)
    if not config.write_keys and not args.allow_no_auth:
        raise UsageError("no write keys: set TOUCHPOINT_WRITE_KEYS=key1,key2 "
                         "(or pass --allow-no-auth to accept every request, for local testing only)")
    return config


def warn_if_above_fd_limit(max_connections: int, reserve: int = 64) -> None:
    """The connection limit only protects if it is reached before the descriptors run out."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and max_connections > soft - reserve:
        log.warning("TOUCHPOINT_COLLECTOR_MAX_CONNECTIONS=%d is not below the file-descriptor limit %d minus %d: "
                    "raise `ulimit -n` or lower the setting, or slow clients can exhaust descriptors", max_connections, soft, reserve)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    config = config_for(args, settings)
    host = args.host or settings.collector_host
    port = settings.collector_port if args.port is None else args.port
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is between 1 and 65535")
    if not config.auth_required and host not in _LOOPBACK:
        log.warning("no write keys and bound to %s: anyone who can reach it can publish events", host)

    from streams.observability.logs import limit_repeats

    # e.g. "socket.accept() out of system resource" once per 10 s, not in a loop (159 MB in 50 s)
    limit_repeats(("asyncio", "aiohttp", "aiokafka"))
    warn_if_above_fd_limit(settings.collector_max_connections)
    publisher = KafkaPublisher(settings)
    limit = ConnectionLimit(settings.collector_max_connections)
    app = create_app(config, publisher, middlewares=[limit.track])
    # in-flight requests get the publish timeout to finish before the producer is stopped;
    # keepalive_timeout also closes a connection that has not sent a whole header in time
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.collector_publish_timeout_s + 2,
                           keepalive_timeout=settings.collector_header_timeout_s)
    await runner.setup()
    try:
        listener = await start_server(runner, limit, host, port)
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connect = asyncio.create_task(publisher.connect_forever())
    print(f"touchpoint collect: listening on http://{host}:{port}, publishing to {publisher.topic} "
          f"({'write keys: ' + str(len(config.write_keys)) if config.auth_required else 'NO AUTH'})", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        print("touchpoint collect: stopping", file=sys.stderr, flush=True)
        listener.close()
        await runner.cleanup()  # stop accepting, let in-flight requests get their acks
        connect.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connect
        await publisher.stop()
    return 0
