"""In-order, gap-free delivery per source partition, checked by the project (pure logic).

Why: around rebalances faust-streaming 0.15 can hand an agent records out of order or skip
some (prefetched records delivered after a rebalance, records fetched while the flow was
paused and dropped, no re-seek for partitions without a committed offset; faust#216, #221).
Its acking then lets it commit past records that were never processed, and our dedup layers
(the profile watermark, the demand batch offsets) assume one partition arrives in order. We
measured the result with ``tests/system/test_crash.py``: 16-24 profiles wrong after 3 kill -9.

So every agent puts an :class:`OffsetGuard` in front of its processing, and the offsets it
commits are the guard's, not Faust's (the source topics are declared with ``acks=False``):

- a record at the expected offset is processed and moves the read cursor;
- a record below it was already processed in this assignment: skipped (a re-delivery);
- a record above it is a gap: not processed; the caller rewinds the consumer to the expected
  offset (after checking with the broker that the missing offsets hold records at all:
  transaction markers leave real holes);
- a consumer position past the cursor with no progress for a while is a gap at the tail
  (records fetched and dropped, none after them to reveal it): rewound the same way;
- only offsets whose processing completed are committed (``to_commit``), and a partition
  revoked and assigned again starts a new epoch, so a batch that was in flight across the
  rebalance cannot advance the new cursor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["OffsetGuard", "Verdict"]


class Verdict(enum.Enum):
    PROCESS = "process"
    REPLAY = "replay"   # below the cursor: already processed, skip
    GAP = "gap"         # above the cursor: records are missing in front of it


@dataclass(slots=True)
class _Cursor:
    read: int        # next offset to process
    done: int        # every offset below this one has been processed completely
    committed: int   # the group's committed offset as far as we know
    epoch: int
    moved_at: float = 0.0           # when ``read`` last moved (monotonic s)
    rewind_at: float | None = None  # when the last rewind for a gap was asked (monotonic s)


class OffsetGuard:
    """Cursors of one source topic's partitions; the caller feeds it every record it gets."""

    def __init__(self) -> None:
        self._cursors: dict[int, _Cursor] = {}
        self._epochs = 0
        self.replays = 0
        self.gaps = 0

    def knows(self, partition: int) -> bool:
        return partition in self._cursors

    def start(self, partition: int, next_offset: int, now_s: float = 0.0) -> None:
        """(Re)start a partition at the group's committed offset (or the log start)."""
        self._epochs += 1
        self._cursors[partition] = _Cursor(next_offset, next_offset, next_offset, self._epochs, now_s)

    def forget(self, partitions: set[int] | None = None) -> None:
        """Revoked partitions: their cursors restart from the committed offset next time."""
        for p in list(self._cursors) if partitions is None else partitions:
            self._cursors.pop(p, None)

    def expected(self, partition: int) -> int:
        return self._cursors[partition].read

    def epoch(self, partition: int) -> int:
        return self._cursors[partition].epoch

    def admit(self, partition: int, offset: int, now_s: float = 0.0) -> Verdict:
        c = self._cursors[partition]
        if offset < c.read:
            self.replays += 1
            return Verdict.REPLAY
        if offset == c.read:
            c.read += 1
            c.moved_at = now_s
            c.rewind_at = None
            return Verdict.PROCESS
        self.gaps += 1
        return Verdict.GAP

    def skip_to(self, partition: int, offset: int) -> None:
        """The broker holds no record between the cursor and ``offset`` (a real hole)."""
        c = self._cursors[partition]
        if offset > c.read:
            if c.done == c.read:
                c.done = offset
            c.read = offset
        c.rewind_at = None

    def should_rewind(self, partition: int, now_s: float, every_s: float) -> bool:
        """True once per gap episode (and again every ``every_s`` if the rewind did not take)."""
        c = self._cursors[partition]
        if c.rewind_at is not None and now_s - c.rewind_at < every_s:
            return False
        c.rewind_at = now_s
        return True

    def stalled(self, partition: int, position: int | None, now_s: float, after_s: float) -> bool:
        """The consumer is past the cursor, yet nothing arrived for ``after_s``: the records in
        between were fetched and dropped (and no later record will reveal the gap)."""
        c = self._cursors[partition]
        return position is not None and position > c.read and now_s - c.moved_at >= after_s

    def partitions(self) -> list[int]:
        return list(self._cursors)

    def complete(self, partition: int, offset: int, epoch: int) -> None:
        """Processing of every admitted record up to ``offset`` finished (same epoch only)."""
        c = self._cursors.get(partition)
        if c is not None and c.epoch == epoch and offset + 1 > c.done:
            c.done = min(offset + 1, c.read)

    def to_commit(self) -> dict[int, int]:
        return {p: c.done for p, c in self._cursors.items() if c.done > c.committed}

    def committed(self, partition: int, offset: int) -> None:
        c = self._cursors.get(partition)
        if c is not None and offset > c.committed:
            c.committed = offset
