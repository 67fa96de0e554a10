"""The in-order guard in front of every agent (streams/kafka/ordered.py), without Kafka."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka.ordered import OffsetGuard, Verdict


def test_in_order_records_are_processed_and_committed_only_once_complete():
    g = OffsetGuard()
    g.start(0, 10)
    assert [g.admit(0, o) for o in (10, 11, 12)] == [Verdict.PROCESS] * 3
    assert g.to_commit() == {}  # admitted is not processed
    g.complete(0, 12, g.epoch(0))
    assert g.to_commit() == {0: 13}
    g.committed(0, 13)
    assert g.to_commit() == {}


def test_below_cursor_is_a_replay_above_is_a_gap():
    g = OffsetGuard()
    g.start(3, 100)
    assert g.admit(3, 99) is Verdict.REPLAY
    assert g.admit(3, 105) is Verdict.GAP   # 100..104 missing: never processed out of order
    assert g.expected(3) == 100
    assert g.admit(3, 100) is Verdict.PROCESS
    assert (g.replays, g.gaps) == (1, 1)


def test_a_gap_asks_for_one_rewind_per_episode():
    g = OffsetGuard()
    g.start(0, 0)
    assert g.should_rewind(0, now_s=1.0, every_s=5.0)
    assert not g.should_rewind(0, now_s=2.0, every_s=5.0)
    assert g.should_rewind(0, now_s=6.5, every_s=5.0)   # the rewind did not take: ask again
    g.admit(0, 0)                                        # the missing record came: episode over
    assert g.should_rewind(0, now_s=6.6, every_s=5.0)


def test_a_real_hole_is_skipped_and_committed_across():
    g = OffsetGuard()
    g.start(0, 5)
    g.admit(0, 5)
    g.complete(0, 5, g.epoch(0))
    g.skip_to(0, 9)            # broker: nothing in 6..8 (transaction markers)
    assert g.admit(0, 9) is Verdict.PROCESS
    g.complete(0, 9, g.epoch(0))
    assert g.to_commit() == {0: 10}


def test_a_batch_in_flight_across_a_rebalance_cannot_move_the_new_cursor():
    g = OffsetGuard()
    g.start(1, 0)
    for o in range(5):
        g.admit(1, o)
    old_epoch = g.epoch(1)
    g.forget({1})              # revoked mid-batch ...
    g.start(1, 0)              # ... and assigned again from the committed offset
    g.complete(1, 4, old_epoch)
    assert g.to_commit() == {}
    assert g.admit(1, 0) is Verdict.PROCESS


def test_complete_never_passes_the_read_cursor():
    g = OffsetGuard()
    g.start(0, 0)
    g.admit(0, 0)
    g.complete(0, 50, g.epoch(0))
    assert g.to_commit() == {0: 1}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_any_delivery_order_processes_each_offset_once_and_in_order(seed):
    """Model a consumer that delivers prefetched records early, re-delivers old ones and skips,
    but rewinds when asked: the guard processes 0..N-1 exactly once, in order."""
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    g = OffsetGuard()
    g.start(0, 0)
    position = 0
    processed = []
    for _ in range(20 * n):
        if len(processed) == n:
            break
        r = rng.random()
        if r < 0.15:
            offset = rng.randrange(0, n)                     # a stale or early record
        else:
            offset = position
            position = min(n - 1, position + (rng.randint(2, 5) if r > 0.95 else 1))  # sometimes skip
        verdict = g.admit(0, offset)
        if verdict is Verdict.PROCESS:
            processed.append(offset)
            g.complete(0, offset, g.epoch(0))
        elif verdict is Verdict.GAP:
            position = g.expected(0)                         # the rewind
    assert processed == list(range(len(processed)))
    assert g.to_commit() == ({0: len(processed)} if processed else {})


def test_a_consumer_past_the_cursor_without_progress_is_a_stall():
    g = OffsetGuard()
    g.start(2, 0, now_s=0.0)
    assert not g.stalled(2, position=0, now_s=100.0, after_s=5.0)   # nothing fetched yet
    assert not g.stalled(2, position=13, now_s=3.0, after_s=5.0)    # in flight to the agent
    assert g.stalled(2, position=13, now_s=6.0, after_s=5.0)        # fetched and dropped
    assert g.admit(2, 0, now_s=7.0) is Verdict.PROCESS
    assert not g.stalled(2, position=13, now_s=8.0, after_s=5.0)    # moving again


def test_forgetting_a_failed_batch_keeps_the_commit_behind_it():
    g = OffsetGuard()
    g.start(0, 0)
    for o in range(3):
        g.admit(0, o)
    g.complete(0, 2, g.epoch(0))
    for o in range(3, 6):
        g.admit(0, o)
    g.forget({0})            # the batch 3..5 failed: restart from the committed offset
    assert g.to_commit() == {}
    g.start(0, 3)
    assert g.admit(0, 6) is Verdict.GAP and g.expected(0) == 3
