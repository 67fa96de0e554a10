"""bench demand_state --close-cost on a small case: the sliced close blocks the loop for less
than the synchronous one, and the figures are all there."""

from __future__ import annotations

from touchpoint_tools.bench.demand_state import close_cost


def test_close_cost_reports_the_longest_loop_block() -> None:
    sync = close_cost(300, 6, 300, live=True, seed=1)
    sliced = close_cost(300, 6, 300, live=True, seed=1, sliced=True, freeze=True)
    for r in (sync, sliced):
        assert r["closes"] == 3 and r["ms_per_close"] > 0
    # the synchronous close is one block as long as the close itself
    assert sync["longest_block_ms"] >= sync["max_ms"] * 0.99
    # sliced (10 ms of work per slice): well under the whole close
    assert sliced["longest_block_ms"] < sliced["max_ms"]
