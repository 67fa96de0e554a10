"""Records produced in batches per topic and partition (aiokafka ``create_batch``/``send_batch``).

``Producer.send`` costs a future, a partitioner call and an accumulator lookup per record
(5-11 us here); one ``send_batch`` per partition and flush costs 1.2-5 us per record
(docs/performance.md). :class:`BatchProducer` collects records with :meth:`~BatchProducer.append`
(synchronous, no await per record) into one open batch per topic and partition, and
:meth:`~BatchProducer.send` hands every batch to the producer: one delivery future per batch.

Delivery is checked like any other send: the caller flushes the producer before each commit and
then asks :meth:`~BatchProducer.take_failures` for what did not land (each record can carry a
``tag`` the caller gets back: the profiles stage tags changelog records with their key).
Record order within a partition is kept: batches of one partition are sent in append order, and
aiokafka's accumulator keeps the order of batches per partition.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from streams.profiles.bundle import key_partition

__all__ = ["BatchProducer"]

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 70  # bytes of a v2 record's framing beyond key, value and headers (upper bound)


class _Open:
    """The open batch of one topic-partition and the tags of its records."""

    __slots__ = ("builder", "tags")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.tags: list[Hashable] = []


class BatchProducer:
    """Batches per (topic, partition) on an aiokafka producer (see the module doc).

    ``producer`` returns the started aiokafka producer (resolved at first use: the worker's
    producer starts after the wiring is built). ``partitions`` is the partition count of every
    topic appended to (the project's topics all have ``TOUCHPOINT_PARTITIONS``, checked at
    start): keyed records go where the default partitioner would put them (murmur2), records
    without a key round-robin. ``max_record_bytes`` is the producer's ``max_request_size``: a
    larger record is refused at :meth:`append`, as ``send`` refuses it, so callers keep their
    "refused for good" path.
    """

    def __init__(self, producer: Callable[[], Any], partitions: int, max_record_bytes: int, failures: Any = None) -> None:
        self._producer = producer
        self._partitions = partitions
        self._max_record_bytes = max_record_bytes
        self._failures = failures  # a counter child incremented once per undelivered batch, or None
        self._open: dict[tuple[str, int], _Open] = {}
        self._full: list[tuple[str, int, _Open]] = []
        self._round_robin = itertools.count()
        self._failed: list[Hashable] = []
        self._sending = asyncio.Lock()  # one send at a time: batches of a partition leave in order
        self.undelivered = 0  # records whose batch failed since the last take_failures()
        self.appended = 0     # records appended since the last send (for metrics and tests)

    def __len__(self) -> int:
        return self.appended

    def append(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
               headers: list[tuple[str, bytes]] | None = None, tag: Hashable = None) -> int:
        """Add one record to the open batch of its partition; returns the partition."""
        size = len(key or b"") + len(value or b"") + RECORD_OVERHEAD
        if headers:
            size += sum(len(h) + len(v) for h, v in headers)
        if size > self._max_record_bytes:
            raise MessageSizeTooLargeError(f"a record of about {size} bytes is over the producer's limit of {self._max_record_bytes}")
        if partition is None:
            partition = key_partition(key, self._partitions) if key is not None else next(self._round_robin) % self._partitions
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = _Open(self._producer().create_batch())
        if batch.builder.append(timestamp=None, key=key, value=value, headers=headers or []) is None:
            # Full: it leaves as it is; a new batch takes the record (an empty batch takes any size).
            self._full.append((topic, partition, batch))
            batch = self._open[tp] = _Open(self._producer().create_batch())
            if batch.builder.append(timestamp=None, key=key, value=value, headers=headers or []) is None:
                raise MessageSizeTooLargeError(f"a record of about {size} bytes does not fit an empty batch")
        batch.tags.append(tag)
        self.appended += 1
        return partition

    async def send(self, delivered: list[asyncio.Future] | None = None) -> int:
        """Hand every batch to the producer (in append order per partition); returns the number
        of records sent. Delivery is awaited by the producer's flush, failures are kept for
        :meth:`take_failures`; ``delivered``, when given, gets each batch's delivery future (to
        await those records alone). A batch the producer could not take stays for the next call.
        With no other send running, the batches sent are those appended before the call (taken
        before its first await)."""
        async with self._sending:
            batches = self._full + [(topic, partition, b) for (topic, partition), b in self._open.items()]
            self._full, self._open = [], {}
            self.appended = 0
            sent = 0
            producer = self._producer() if batches else None
            for i, (topic, partition, batch) in enumerate(batches):
                try:
                    fut = await producer.send_batch(batch.builder, topic, partition=partition)
                except BaseException:
                    self._full = batches[i:] + self._full  # not handed over: sent by the next call, in order
                    raise
                fut.add_done_callback(partial(self._delivered, batch.tags))
                if delivered is not None:
                    delivered.append(fut)
                sent += len(batch.tags)
            return sent

    def _delivered(self, tags: list[Hashable], fut: asyncio.Future) -> None:
        if fut.cancelled():
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = fut.exception()
        if exc is None:
            return
        self.undelivered += len(tags)
        self._failed.extend(tags)
        if self._failures is not None:
            self._failures.inc()
        log.error("a batch of %d records was not delivered (%s: %s)", len(tags), type(exc).__name__, exc)

    def take_failures(self) -> tuple[int, list[Hashable]]:
        """Records not delivered since the last call: their number and their tags."""
        n, tags = self.undelivered, self._failed
        self.undelivered, self._failed = 0, []
        return n, tags
