"""Live profiles: one queryable, bounded profile per person, folded from ``profile-events``.

:mod:`.profile` (the pure value: fold, merge, render), :mod:`.stage` (Faust-free decisions per
record: dedup, merge folding, forwarding, erasure), :mod:`.agent` (the Faust table and agent),
:mod:`.views` (HTTP lookup routed to the owning worker). See docs/profiles.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]


def register(app: Any, ctx: WorkerContext) -> None:
    """Declare the profiles table, agent and HTTP views on a worker's Faust app."""
    # Imported here so the pure modules (profile, stage) stay importable without Faust.
    from streams.profiles import agent, views

    views.register(app, ctx, agent.register(app, ctx))
