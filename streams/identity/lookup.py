"""An identifier as a person types it (``TYPE:VALUE``) resolved to the profile holding it.

The one path the profile view (``/profiles?id=``) and the customer page (``/customers/data?id=``)
share: normalised and keyed-hashed like ingest does, then looked up in the identity graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams.identity.identifiers import stored_identifier

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["Resolved", "resolve_typed"]

MISSING = "missing query parameter id=TYPE:VALUE, e.g. id=user_id:42"


@dataclass(frozen=True)
class Resolved:
    """The profile id, or why there is none: ``error`` and the HTTP ``status`` to answer with."""

    profile_id: str | None
    error: str = ""
    status: int = 200


async def resolve_typed(ctx: WorkerContext, text: str | None, noun: str = "profile") -> Resolved:
    """Resolve ``text``; ``noun`` names what the caller serves in the 404 message."""
    if not text:
        return Resolved(None, MISSING, 400)
    try:
        ident = stored_identifier(text, ctx.normalizer.hasher, ctx.settings.default_phone_region)
    except ValueError as exc:
        # The message may quote the value; only the person who sent it sees it (never logged).
        return Resolved(None, str(exc), 400)
    profile_id = await ctx.identity.lookup(ident)
    if profile_id is None:
        return Resolved(None, f"no {noun} has this {ident[0]}", 404)
    return Resolved(profile_id)
