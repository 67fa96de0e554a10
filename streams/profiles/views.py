"""Profile lookup over HTTP, answered by the worker that owns the profile's partition.

- ``GET /profiles/{profile_id}``: the profile (a merged-away id answers with its survivor).
- ``GET /profiles?id=TYPE:VALUE``: any identifier, raw as a person types it (email/phone are
  normalised and keyed-hashed here, like ingest does), resolved in the identity graph.

A worker that does not own the key proxies the request to the owner's canonical URL
(``http://web_host:web_port``, taken from Faust's assignor metadata), forwarding the bearer
token; a hop counter stops loops while ownership moves. During a rebalance the answer is 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View

from streams.identity.lookup import resolve_typed
from streams.profiles.agent import TABLE
from streams.profiles.profile import decode, render
from streams.web.owners import SERVED_BY, PartitionOwners
from streams.web.views import authorized

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register", "SERVED_BY"]  # SERVED_BY: the header naming the worker that read the table

MAX_HOPS = 4  # owner changes + one merge chain step each; more means ownership is moving: 503


def register(app: faust.App, ctx: WorkerContext, table: faust.types.TableT) -> None:
    """Declare the profile views on ``app`` for the ``profiles`` ``table``."""
    s = ctx.settings
    owners = PartitionOwners(app, table, TABLE, s.partitions, max_hops=MAX_HOPS, what="profile")
    json = owners.json

    async def serve(view: View, request: Request, profile_id: str, hops: int) -> Response:
        """The profile from the worker owning it, following a merge to its survivor."""
        if (elsewhere := await owners.route(view, request, profile_id, f"/profiles/{profile_id}", hops)) is not None:
            return elsewhere
        raw = table.get(profile_id.encode())
        if raw is None:
            return json(view, {"error": f"no profile {profile_id}"}, 404)
        state = decode(raw)
        if state.get("tomb") == "merged":
            return await serve(view, request, state["into"], hops + 1)
        if state.get("tomb") == "erased":
            return json(view, {"error": f"no profile {profile_id}"}, 404)
        return json(view, render(profile_id, state))

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
            return await serve(self, request, profile_id, owners.hops_of(request))

    @app.page("/profiles")
    class ProfileByIdentifier(View):
        """``GET /profiles?id=TYPE:VALUE``."""

        async def get(self, request: Request) -> Response:
            if not authorized(s.web_token, request):
                return json(self, {"error": "missing or wrong bearer token"}, 401)
            found = await resolve_typed(ctx, request.query.get("id"), "profile")
            if found.profile_id is None:
                return json(self, {"error": found.error}, found.status)
            return await serve(self, request, found.profile_id, owners.hops_of(request))
