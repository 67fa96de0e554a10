"""Health, readiness and metrics endpoints on the worker's Faust web server."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.kafka.delivery import tables_recovered

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register", "authorized", "STUCK_AFTER_S"]

STUCK_AFTER_S = 30.0  # a source partition failing this long without completing a record: not ready


def authorized(token: str, request: Request) -> bool:
    """True when no token is configured or the request carries it as a bearer token."""
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def register(app: faust.App, ctx: WorkerContext) -> None:
    token = ctx.settings.web_token

    def guarded(handler: Callable[[View, Request], Awaitable[Response]]) -> Callable[[View, Request], Awaitable[Response]]:
        async def wrapper(self: View, request: Request) -> Response:
            if not authorized(token, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            return await handler(self, request)
        return wrapper

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        return self.json({"status": "alive"})

    @app.page("/readyz")
    @guarded
    async def readyz(self: View, request: Request) -> Response:
        assigned = app.consumer.assignment() if app.consumer else set()
        recovered = tables_recovered(app)
        ordered = ctx.ordered
        stuck = ordered.stuck_seconds() if ordered is not None else 0.0
        ready = bool(assigned) and recovered and not app.rebalancing and stuck < STUCK_AFTER_S
        body = {"ready": ready, "partitions": len(assigned), "tables_recovered": recovered, "rebalancing": app.rebalancing,
                "stuck_s": round(stuck, 1)}
        return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    @guarded
    async def metrics(self: View, request: Request) -> Response:
        return self.bytes(generate_latest(ctx.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])
