"""The customer page: ``/customers?id=TYPE:VALUE`` on the worker, for marketing staff.

``/customers`` is a static shell (streams/web/static/customers.*, no data, no CDN) served without
the token; its script reads the identifier from the query and the bearer token from the URL
fragment (``#token=...``, never sent to a server) and calls ``/customers/data?id=TYPE:VALUE``,
guarded like every data endpoint. The data view resolves the identifier (normalised and
keyed-hashed like ingest, resolved in the identity graph) and asks the worker owning the profile
(``/customers/profile/{id}``, one proxied hop, like streams/profiles/views.py) for
:func:`customer_view`: identifiers (email and phone values masked: they are keyed hashes and are
shown only as a short fingerprint), channels, timeline, orders, computed traits, audiences, consent.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from streams.activation import traits as TR
from streams.activation.definitions import Definitions
from streams.profiles.profile import render

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["customer_view", "mask_identifier", "register"]

log = logging.getLogger(__name__)

MASKED = ("email", "phone")


def mask_identifier(kind: str, value: str) -> str:
    """How an identifier is shown: email/phone never as a value (a fingerprint of the hash only)."""
    if kind in MASKED:
        digest = value.rsplit(":", 1)[-1]
        return f"hidden ({kind} #{digest[:6]})"
    return value


def customer_view(profile_id: str, state: dict[str, Any], defs: Definitions, now_ms: int) -> dict[str, Any]:
    """Everything the page shows about one live profile (JSON-safe)."""
    body = render(profile_id, state)
    ax = state.get("ax") or {}
    computed = TR.evaluate(ax, defs, now_ms)
    published = ax.get("m") or {}
    by_name = {a.name: a for a in defs.audiences}
    body["identifiers"] = [{**i, "value": mask_identifier(i["type"], i["value"]), "masked": i["type"] in MASKED}
                           for i in body["identifiers"]]
    body["computed_traits"] = [{"name": t.name, "kind": t.kind, "value": computed.get(t.name), "description": t.description}
                               for t in defs.traits]
    body["audiences"] = [{"name": name, "purpose": by_name[name].purpose if name in by_name else None,
                          "description": by_name[name].description if name in by_name else ""}
                         for name, k in sorted(published.items()) if k % 2 == 1]
    body["generated_at"] = now_ms
    return body


def _static(name: str) -> bytes:
    return (resources.files("streams.web") / "static" / name).read_bytes()


def register(app: Any, ctx: WorkerContext) -> None:
    """Declare ``/customers`` (shell and assets), ``/customers/data`` and ``/customers/profile/{id}``."""
    from faust.web import Request, Response, View

    from streams.identity.lookup import resolve_typed
    from streams.profiles.profile import decode
    from streams.web.owners import PartitionOwners
    from streams.web.views import authorized

    s = ctx.settings
    table = ctx.profiles_table
    owners = PartitionOwners(app, table, "profiles", s.partitions, what="profile")
    assets = {"customers.js": ("application/javascript", _static("customers.js")), "customers.css": ("text/css", _static("customers.css"))}
    page = _static("customers.html")
    reply = owners.json

    async def fetch(view: View, request: Request, pid: str, hops: int) -> Response:
        """The customer view from the worker owning ``pid`` (following a merge to its survivor)."""
        if (elsewhere := await owners.route(view, request, pid, f"/customers/profile/{pid}", hops)) is not None:
            return elsewhere
        raw = table.get(pid.encode())
        state = decode(raw) if raw else None
        if state is None or state.get("tomb") == "erased":
            return reply(view, {"error": "no such customer"}, 404)
        if state.get("tomb") == "merged":
            return await fetch(view, request, state["into"], hops + 1)
        return reply(view, customer_view(pid, state, ctx.activation.defs, time.time_ns() // 1_000_000))

    async def data(view: View, request: Request) -> Response:
        """``/customers/data?id=TYPE:VALUE``: resolve the identifier, then fetch its customer."""
        found = await resolve_typed(ctx, request.query.get("id"), "customer")
        if found.profile_id is None:
            return reply(view, {"error": found.error}, found.status)
        return await fetch(view, request, found.profile_id, 0)

    @app.page("/customers")
    async def customers_page(self: View, request: Request) -> Response:
        return self.bytes(page, content_type="text/html")

    @app.page("/customers/{asset}")
    async def customers_asset(self: View, request: Request, asset: str) -> Response:
        if asset == "data":
            if not authorized(s.web_token, request):
                return reply(self, {"error": "missing or wrong bearer token"}, 401)
            return await data(self, request)
        found = assets.get(asset)
        if found is None:
            return reply(self, {"error": "not found"}, 404)
        return self.bytes(found[1], content_type=found[0])

    @app.page("/customers/profile/{profile_id}")
    async def customers_profile(self: View, request: Request, profile_id: str) -> Response:
        if not authorized(s.web_token, request):
            return reply(self, {"error": "missing or wrong bearer token"}, 401)
        if not profile_id or len(profile_id) > 64 or not all(c.isalnum() or c in "-_." for c in profile_id):
            return reply(self, {"error": "bad profile id"}, 400)
        return await fetch(self, request, profile_id, owners.hops_of(request))
