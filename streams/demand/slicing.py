"""A bucket close run in slices on the worker's event loop, instead of one synchronous block.

A close feeds every key of a partition its due buckets (``DemandStage._close_steps`` yields
after each key). :func:`run_sliced` runs those steps and hands the loop back (``sleep(0)``)
whenever ``budget_s`` of wall time has passed since it last did, so ingest, HTTP lookups and
commits run between slices. The steps are the same, in the same order, whatever the budget: the
result is identical to running them in one go (tests/unit/demand/test_stage_sliced.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

__all__ = ["CloseInterrupted", "run_sliced"]


class CloseInterrupted(RuntimeError):
    """A rebalance reached the stage while a sliced close was in progress: the close's outcome
    is dropped (nothing was written) and the record must be processed again from the commit."""


async def run_sliced(steps: Iterable[object], budget_s: float, clock: Callable[[], float] = time.perf_counter,
                     on_slice: Callable[[], None] | None = None) -> int:
    """Run every step of ``steps``, yielding to the event loop once ``budget_s`` has passed since
    the last yield; returns how many times it yielded. ``budget_s <= 0`` yields after every step.
    ``on_slice`` runs before each yield (the worker's GC policy: gcpolicy.py).

    >>> import asyncio
    >>> asyncio.run(run_sliced(range(5), 0.0))
    5
    """
    yields = 0
    deadline = clock() + budget_s
    for _ in steps:
        if clock() >= deadline:
            if on_slice is not None:
                on_slice()
            await asyncio.sleep(0)
            yields += 1
            deadline = clock() + budget_s
    return yields
