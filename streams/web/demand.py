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

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View
from yarl import URL

from streams.demand.foresight import Foresight, ForesightConfig
from streams.kafka import topics as T
from streams.kafka.delivery import tables_recovered
from streams.profiles.bundle import key_partition
from streams.web.demand_api import forecast_body, keys_body, parse_forecast_query, parse_series_key, series_key
from streams.web.views import authorized

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]

log = logging.getLogger(__name__)

HOPS_HEADER = "X-Touchpoint-Hops"
SERVED_BY = "X-Touchpoint-Served-By"
MAX_HOPS = 3
TABLE = "demand"


def _static(name: str) -> bytes:
    return (resources.files("streams.web") / "static" / name).read_bytes()


def register(app: faust.App, ctx: WorkerContext, measures: Iterable[str] | None = None) -> None:
    """Declare the demand page and API; needs the demand agent registered first."""
    s = ctx.settings
    stage = ctx.demand
    table = stage.state
    foresight: Foresight = getattr(stage, "foresight", None) or Foresight(
        ForesightConfig(bucket_s=s.demand_bucket_s, tz=s.demand_timezone))
    watched = tuple(measures or getattr(stage.config, "measures", None) or ("events",))
    me = URL(str(app.conf.canonical_url))
    session: dict[str, aiohttp.ClientSession] = {}
    source_topic = s.topic(T.DEMAND_COUNTS)
    page = _static("demand.html")
    assets = {"demand.js": ("application/javascript", _static("demand.js")), "demand.css": ("text/css", _static("demand.css"))}

    def json(view: View, body: Any, status: int = 200) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                          headers={SERVED_BY: str(me), "Cache-Control": "no-store"})

    def client() -> aiohttp.ClientSession:
        c = session.get("c")
        if c is None or c.closed:
            c = session["c"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return c

    def headers_of(request: Request, hops: int) -> dict[str, str]:
        out = {HOPS_HEADER: str(hops + 1)}
        if "Authorization" in request.headers:
            out["Authorization"] = request.headers["Authorization"]
        return out

    def owners() -> dict[URL, set[int]]:
        changelog = table.changelog_topic.get_topic_name()
        return {URL(url): set(topics.get(changelog, ())) for url, topics in app.router.table_metadata(TABLE).items()}

    def owner(key: str) -> URL | None:
        partition = key_partition(key.encode(), s.partitions)
        for url, parts in owners().items():
            if partition in parts:
                return url
        return None

    def same(a: URL, b: URL) -> bool:
        return (a.host, a.port) == (b.host, b.port)

    def local_entries() -> list[tuple[str, dict[str, Any]]]:
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == source_topic}
        out = []
        for skey, entry in list(table.items()):
            if entry and entry.get("q") in active and parse_series_key(skey)[1] in watched:
                out.append((skey, entry))
        return out

    def hops_of(request: Request) -> int:
        try:
            return int(request.headers.get(HOPS_HEADER, "0"))
        except ValueError:
            return 0

    def busy() -> str | None:
        if app.rebalancing or not tables_recovered(app):
            return "worker is rebalancing or recovering its tables; retry"
        return None

    async def keys(view: View, request: Request) -> Response:
        if (reason := busy()) is not None:
            return json(view, {"error": reason}, 503)
        rows = keys_body(local_entries(), foresight)
        if request.query.get("local"):
            return json(view, {"keys": rows, "workers": [str(me)]})
        workers, errors = [str(me)], []
        others = [url for url in owners() if not same(url, me)]

        async def ask(url: URL) -> list[dict[str, Any]]:
            async with client().get(url.with_path("/demand/keys").with_query(local="1"), headers=headers_of(request, hops_of(request))) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
                return orjson.loads(await resp.read())["keys"]

        answers = await asyncio.gather(*(ask(u) for u in others), return_exceptions=True)
        for url, answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                errors.append(f"{url}: {answer}")
            else:
                rows.extend(answer)
                workers.append(str(url))
        rows.sort(key=lambda r: (r["key"], r["measure"]))
        body: dict[str, Any] = {"keys": rows, "workers": workers}
        if errors:
            body["partial"] = errors
        return json(view, body)

    async def forecast(view: View, request: Request) -> Response:
        try:
            key, measure, horizon = parse_forecast_query(request.query, foresight.max_horizon, watched)
        except ValueError as exc:
            return json(view, {"error": str(exc)}, 400)
        hops = hops_of(request)
        if hops > MAX_HOPS:
            return json(view, {"error": "demand partition ownership is moving (rebalance); retry"}, 503)
        if (reason := busy()) is not None:
            return json(view, {"error": reason}, 503)
        url = owner(key)
        if url is None:
            return json(view, {"error": "no worker owns this key's demand partition right now; retry"}, 503)
        if not same(url, me):
            target = url.with_path("/demand/forecast").with_query(dict(request.query))
            try:
                async with client().get(target, headers=headers_of(request, hops)) as resp:
                    return view.bytes(await resp.read(), content_type="application/json", status=resp.status,
                                      headers={SERVED_BY: resp.headers.get(SERVED_BY, str(url))})
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("demand: owner %s of %s unreachable: %s", url, key, exc)
                return json(view, {"error": "the worker owning this key is unreachable; retry"}, 503)
        status, body = forecast_body(key, measure, horizon, table.get(series_key(key, measure)), foresight)
        return json(view, body, status)

    @app.page("/demand")
    async def demand_page(self: View, request: Request) -> Response:
        return self.bytes(page, content_type="text/html")

    @app.page("/demand/{asset}")
    async def demand_asset(self: View, request: Request, asset: str) -> Response:
        if asset in ("keys", "forecast"):
            if not authorized(s.web_token, request):
                return json(self, {"error": "missing or wrong bearer token"}, 401)
            return await (keys if asset == "keys" else forecast)(self, request)
        found = assets.get(asset)
        if found is None:
            return json(self, {"error": "not found"}, 404)
        return self.bytes(found[1], content_type=found[0])

    @app.on_before_shutdown.connect
    async def _close(sender: Any, *args: Any, **kwargs: Any) -> None:
        c = session.pop("c", None)
        if c is not None:
            await c.close()
