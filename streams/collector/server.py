"""The collector's listening socket: header and body timeouts, and a bound on open connections.

Slowloris (issue 21): 220 connections that each sent half a request header held every file
descriptor of a collector under a 200-descriptor limit; real requests waited 47 s, and asyncio
logged "socket.accept() out of system resource" in a loop (159 MB in 50 s). Three defences:

- **header timeout**: a connection must send a complete request header within
  ``collector_header_timeout_s`` of connecting (and of its previous answer), else it is closed
  (aiohttp's keep-alive timer, which also runs from the start of a connection);
- **body timeout**: the handler stops waiting for a body after ``collector_body_timeout_s`` (408,
  in :mod:`streams.collector.app`);
- **connection limit**: at ``collector_max_connections`` open connections, accepting one more closes
  the oldest connection that is not inside a request (half-sent headers, idle keep-alive), so
  descriptors never run out and a real request always gets in; evictions are logged as one
  summary line per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["ConnectionLimit", "start_server"]

log = logging.getLogger(__name__)


class ConnectionLimit:
    """Keeps a :class:`aiohttp.web.Server` under ``limit`` open connections by evicting idle ones."""

    def __init__(self, limit: int, log_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.busy: set[object] = set()  # protocols (connections) inside a request right now
        self.evicted = 0
        self._unlogged = 0
        self._logged_at = float("-inf")
        self._interval = log_interval_s
        self._clock = clock

    @web.middleware
    async def track(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Middleware: marks the request's connection busy while its handler runs."""
        protocol = request.protocol
        self.busy.add(protocol)
        try:
            return await handler(request)
        finally:
            self.busy.discard(protocol)

    def make_room(self, server: web.Server) -> None:
        """Before accepting one more connection: close the oldest idle ones until it fits."""
        connections = server.connections  # oldest first
        excess = len(connections) + 1 - self.limit
        if excess <= 0:
            return
        for handler in connections:
            if excess <= 0:
                break
            if handler in self.busy:
                continue
            handler.force_close()
            excess -= 1
            self.evicted += 1
            self._unlogged += 1
        now = self._clock()
        if self._unlogged and now - self._logged_at >= self._interval:
            log.warning("at the connection limit (%d): closed %d idle or half-sent connections since the last report",
                        self.limit, self._unlogged)
            self._unlogged, self._logged_at = 0, now

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``: makes room, then asks aiohttp for a handler."""
        def make() -> asyncio.Protocol:
            self.make_room(server)
            return server()
        return make


async def start_server(runner: web.AppRunner, limit: ConnectionLimit, host: str, port: int, backlog: int = 128) -> asyncio.AbstractServer:
    """Listen on ``host:port`` with ``limit`` in front of the runner's server (after ``runner.setup()``)."""
    server = runner.server
    assert server is not None, "call runner.setup() first"
    loop = asyncio.get_running_loop()
    return await loop.create_server(limit.factory(server), host, port, backlog=backlog, reuse_address=True)
