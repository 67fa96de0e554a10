"""Live profiles: one queryable, bounded profile per person, folded from ``profile-events``.

:mod:`.profile` (the pure value: fold, merge, render), :mod:`.stage` (Faust-free decisions per
record: dedup, merge folding, forwarding, erasure), :mod:`.agent` (the Faust table and agent),
:mod:`.views` (HTTP lookup routed to the owning worker). See docs/profiles.md.
"""

from typing import Any

__all__ = ["register"]


def register(app: Any, ctx: Any) -> None:
    """Declare the profiles table, agent and HTTP views on a worker's Faust app."""
    # Imported here so the pure modules (profile, stage) stay importable without Faust.
    from streams.profiles import agent, views

    views.register(app, ctx, agent.register(app, ctx))
