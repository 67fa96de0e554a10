"""Live profiles: one queryable, bounded profile per person, folded from ``profile-events``.

:mod:`.profile` (the pure value: fold, merge, render), :mod:`.stage` (Faust-free decisions per
record: dedup, merge folding, forwarding, erasure), :mod:`.agent` (the Faust table and agent),
:mod:`.views` (HTTP lookup routed to the owning worker). See docs/profiles.md.
"""
