"""Profile lookup over HTTP, answered by the worker that owns the profile's partition.

- ``GET /profiles/{profile_id}``: the profile (a merged-away id answers with its survivor).
- ``GET /profiles?id=TYPE:VALUE``: any identifier, raw as a person types it (email/phone are
  normalised and keyed-hashed here, like ingest does), resolved in the identity graph.

A worker that does not own the key proxies the request to the owner's canonical URL
(``http://web_host:web_port``, taken from Faust's assignor metadata), forwarding the bearer
token; a hop counter stops loops while ownership moves. During a rebalance the answer is 503.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View
from yarl import URL

from streams.identity.identifiers import stored_identifier
from streams.kafka.delivery import tables_recovered
from streams.profiles.agent import TABLE
from streams.profiles.bundle import key_partition
from streams.profiles.profile import decode, render
from streams.web.views import authorized

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]

log = logging.getLogger(__name__)

HOPS_HEADER = "X-Touchpoint-Hops"
SERVED_BY = "X-Touchpoint-Served-By"  # canonical URL of the worker that read the table
MAX_HOPS = 4  # owner changes + one merge chain step each; more means ownership is moving: 503


def register(app: faust.App, ctx: WorkerContext, table: faust.types.TableT) -> None:
    """Declare the profile views on ``app`` for the ``profiles`` ``table``."""
    s = ctx.settings
    session: dict[str, aiohttp.ClientSession] = {}
    me = URL(str(app.conf.canonical_url))

    def json(view: View, body: Any, status: int = 200) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status, headers={SERVED_BY: str(me)})

    def owner(profile_id: str) -> URL | None:
        """Canonical URL of the worker actively owning the key's partition, None if unknown now."""
        partition = key_partition(profile_id.encode(), s.partitions)
        changelog = table.changelog_topic.get_topic_name()
        for url, topics in app.router.table_metadata(TABLE).items():
            if partition in topics.get(changelog, ()):
                return URL(url)
        return None

    def same(a: URL, b: URL) -> bool:
        return (a.host, a.port) == (b.host, b.port)

    async def proxy(view: View, request: Request, url: URL, profile_id: str, hops: int) -> Response:
        client = session.get("c")
        if client is None or client.closed:
            client = session["c"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        headers = {HOPS_HEADER: str(hops + 1)}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with client.get(url.with_path(f"/profiles/{profile_id}"), headers=headers) as resp:
                served = {SERVED_BY: resp.headers.get(SERVED_BY, str(url))}
                return view.bytes(await resp.read(), content_type="application/json", status=resp.status, headers=served)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("profiles: owner %s of %s unreachable: %s", url, profile_id, exc)
            return json(view, {"error": "the worker owning this profile is unreachable; retry"}, 503)

    async def serve(view: View, request: Request, profile_id: str, hops: int) -> Response:
        if hops > MAX_HOPS:
            return json(view, {"error": "profile ownership is moving (rebalance); retry"}, 503)
        if app.rebalancing or not tables_recovered(app):
            return json(view, {"error": "worker is rebalancing or recovering its tables; retry"}, 503)
        url = owner(profile_id)
        if url is None:
            return json(view, {"error": "no worker owns this profile's partition right now; retry"}, 503)
        if not same(url, me):
            return await proxy(view, request, url, profile_id, hops)
        raw = table.get(profile_id.encode())
        if raw is None:
            return json(view, {"error": f"no profile {profile_id}"}, 404)
        state = decode(raw)
        if state.get("tomb") == "merged":
            return await serve(view, request, state["into"], hops + 1)
        if state.get("tomb") == "erased":
            return json(view, {"error": f"no profile {profile_id}"}, 404)
        return json(view, render(profile_id, state))

    def hops_of(request: Request) -> int:
        try:
            return int(request.headers.get(HOPS_HEADER, "0"))
        except ValueError:
            return 0

    def bad_id(profile_id: str) -> str | None:
        if not profile_id or len(profile_id) > 64 or not all(c.isalnum() or c in "-_." for c in profile_id):
            return "profile id: letters, digits, '-', '_' and '.' only, at most 64 characters"
        return None

    @app.page("/profiles/{profile_id}")
    class ProfileById(View):
        """``GET /profiles/{profile_id}``."""

        async def get(self, request: Request, profile_id: str) -> Response:
            if not authorized(s.web_token, request):
                return json(self, {"error": "missing or wrong bearer token"}, 401)
            error = bad_id(profile_id)
            if error:
                return json(self, {"error": error}, 400)
            return await serve(self, request, profile_id, hops_of(request))

    @app.page("/profiles")
    class ProfileByIdentifier(View):
        """``GET /profiles?id=TYPE:VALUE``."""

        async def get(self, request: Request) -> Response:
            if not authorized(s.web_token, request):
                return json(self, {"error": "missing or wrong bearer token"}, 401)
            text = request.query.get("id")
            if not text:
                return json(self, {"error": "missing query parameter id=TYPE:VALUE, e.g. id=user_id:42"}, 400)
            try:
                ident = stored_identifier(text, ctx.normalizer.hasher, s.default_phone_region)
            except ValueError as exc:
                # The message may quote the value; only the person who sent it sees it (not logged).
                return json(self, {"error": str(exc)}, 400)
            profile_id = await ctx.identity.lookup(ident)
            if profile_id is None:
                return json(self, {"error": f"no profile has this {ident[0]}"}, 404)
            return await serve(self, request, profile_id, hops_of(request))

    @app.on_before_shutdown.connect
    async def _close(sender: Any, *args: Any, **kwargs: Any) -> None:
        client = session.pop("c", None)
        if client is not None:
            await client.close()

