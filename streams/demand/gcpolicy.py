"""How the worker keeps CPython's full GC passes off the demand stage's long-lived state.

Measured (``python -m touchpoint_tools.bench.demand_state --close-cost``, docs/performance.md):
with 2,000 series and 5-min buckets a full (generation 2) pass takes ~300 ms, and the 25% rule
starts one or two per bucket close: each close allocates a new snapshot (monitor + forecaster,
36 containers, lists of up to 2,016 floats every pass walks) for every series, and frees the
old ones by reference counting at commit. The walk is the cost, not the garbage: the snapshots
never form cycles.

:class:`CloseGc` calls ``gc.freeze()`` between the slices of a close and after every committed
close: what is alive then (the table, the live monitors, the snapshots the close has built so
far, the rest of the worker) moves to the permanent generation, which no pass walks; objects in
it that die are still freed by reference counting, as the replaced snapshots are (and those of
an outcome that is never committed). Freezing only after the close left one full pass over the
close's own new snapshots (~100-200 ms) inside most closes; between slices, none is left. What a frozen object cannot get is a cyclic collection, so every
``unfreeze_every`` closes (a day of 5-min buckets by default) ``gc.unfreeze()`` hands everything
back to the oldest generation and the next automatic full pass collects any cyclic garbage
among it: one long pass a day instead of one or two per close. ``gc.freeze`` and
``gc.unfreeze`` only relink lists (constant time).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

__all__ = ["CloseGc"]


class CloseGc:
    """``after_close()`` once per committed bucket close (see the module doc).

    >>> calls = []
    >>> policy = CloseGc(3, freeze=lambda: calls.append("f"), unfreeze=lambda: calls.append("u"))
    >>> for _ in range(4): policy.after_close()
    >>> calls
    ['f', 'f', 'u', 'f']
    """

    def __init__(self, unfreeze_every: int = 288, freeze: Callable[[], None] = gc.freeze,
                 unfreeze: Callable[[], None] = gc.unfreeze) -> None:
        self.unfreeze_every = max(1, unfreeze_every)
        self._freeze, self._unfreeze = freeze, unfreeze
        self.closes = 0

    def after_slice(self) -> None:
        """Between slices of a close: freeze what the slice allocated (not counted as a close)."""
        self._freeze()

    def after_close(self) -> None:
        self.closes += 1
        if self.closes % self.unfreeze_every == 0:
            self._unfreeze()  # a day's frozen objects back to the oldest generation: cycles collected
        else:
            self._freeze()
