"""The demand page and its data on the worker's web server.

- ``GET /demand``: the page (static HTML/JS/CSS, no data, served without the token like /oncall;
  the page sends the token it finds in the URL fragment ``#token=...``).
- ``GET /demand/keys``: every series (key and measure) with its shift state and last values. Each
  worker lists the series of its own partitions (``?local=1``); without it the worker also asks
  every other worker that owns demand partitions and merges the answers.
- ``GET /demand/forecast?key=category:masks&measure=units&horizon=48``: history, baseline,
  forecast with 80/95 % bands and the shifts of one series, answered by the worker owning the
  key's demand partition (proxied there, with the bearer token, like ``/profiles``). Bad query
  parameters answer 400 with what is wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View

from streams.demand.foresight import Foresight, ForesightConfig
from streams.kafka import topics as T
from streams.web.demand_api import forecast_body, keys_body, parse_forecast_query, parse_series_key, series_key
from streams.web.owners import PartitionOwners
from streams.web.views import authorized

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]

log = logging.getLogger(__name__)

MAX_HOPS = 3
TABLE = "demand"


def _static(name: str) -> bytes:
    return (resources.files("streams.web") / "static" / name).read_bytes()


class DemandViews:
    """The answers behind ``/demand/keys`` and ``/demand/forecast`` on one worker."""

    def __init__(self, app: faust.App, ctx: WorkerContext, measures: Iterable[str] | None = None) -> None:
        s = ctx.settings
        stage = ctx.demand
        self.app = app
        self.table = stage.state
        self.foresight: Foresight = getattr(stage, "foresight", None) or Foresight(
            ForesightConfig(bucket_s=s.demand_bucket_s, tz=s.demand_timezone))
        self.watched = tuple(measures or getattr(stage.config, "measures", None) or ("events",))
        self.source_topic = s.topic(T.DEMAND_COUNTS)
        self.owners = PartitionOwners(app, self.table, TABLE, s.partitions, max_hops=MAX_HOPS, what="series")

    def local_entries(self) -> list[tuple[str, dict[str, Any]]]:
        """The watched series of the demand partitions this worker actively owns."""
        active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.source_topic}
        return [(skey, entry) for skey, entry in list(self.table.items())
                if entry and entry.get("q") in active and parse_series_key(skey)[1] in self.watched]

    async def keys(self, view: View, request: Request) -> Response:
        """Every series of every worker (``?local=1``: this worker's only); ``partial`` names who failed."""
        owners = self.owners
        if (reason := owners.busy()) is not None:
            return owners.json(view, {"error": reason}, 503)
        rows = keys_body(self.local_entries(), self.foresight)
        if request.query.get("local"):
            return owners.json(view, {"keys": rows, "workers": [str(owners.me)]})
        others = owners.others()
        answers = await asyncio.gather(*(owners.get_json(url, "/demand/keys", request, {"local": "1"}) for url in others),
                                       return_exceptions=True)
        workers, errors = [str(owners.me)], []
        for url, answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                errors.append(f"{url}: {answer}")
            else:
                rows.extend(answer["keys"])
                workers.append(str(url))
        rows.sort(key=lambda r: (r["key"], r["measure"]))
        body: dict[str, Any] = {"keys": rows, "workers": workers}
        if errors:
            body["partial"] = errors
        return owners.json(view, body)

    async def forecast(self, view: View, request: Request) -> Response:
        """One series' history, baseline, forecast and shifts, from the worker owning it."""
        owners = self.owners
        try:
            key, measure, horizon = parse_forecast_query(request.query, self.foresight.max_horizon, self.watched)
        except ValueError as exc:
            return owners.json(view, {"error": str(exc)}, 400)
        elsewhere = await owners.route(view, request, key, "/demand/forecast", owners.hops_of(request), dict(request.query))
        if elsewhere is not None:
            return elsewhere
        status, body = forecast_body(key, measure, horizon, self.table.get(series_key(key, measure)), self.foresight)
        return owners.json(view, body, status)


def register(app: faust.App, ctx: WorkerContext, measures: Iterable[str] | None = None) -> None:
    """Declare the demand page and API; needs the demand agent registered first."""
    views = DemandViews(app, ctx, measures)
    token = ctx.settings.web_token
    page = _static("demand.html")
    assets = {"demand.js": ("application/javascript", _static("demand.js")), "demand.css": ("text/css", _static("demand.css"))}

    @app.page("/demand")
    async def demand_page(self: View, request: Request) -> Response:
        return self.bytes(page, content_type="text/html")

    @app.page("/demand/{asset}")
    async def demand_asset(self: View, request: Request, asset: str) -> Response:
        if asset in ("keys", "forecast"):
            if not authorized(token, request):
                return views.owners.json(self, {"error": "missing or wrong bearer token"}, 401)
            return await (views.keys if asset == "keys" else views.forecast)(self, request)
        found = assets.get(asset)
        if found is None:
            return views.owners.json(self, {"error": "not found"}, 404)
        return self.bytes(found[1], content_type=found[0])
