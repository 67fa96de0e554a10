"""Batched produce (streams/kafka/batches.py) and the ingest's batch source
(streams/kafka/batchsource.py) against fakes of aiokafka's producer and consumer. The crash,
rebalance and outage tests in tests/system run the real ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from streams.kafka.batches import BatchProducer
from streams.kafka.batchsource import BatchSource, ConsumerPositions, Undelivered
from streams.kafka.ordering import OrderedSource
from streams.profiles.bundle import key_partition

# -- a fake aiokafka producer ----------------------------------------------------------------


class _Builder:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes | None, list]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes | None, headers: list) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, headers))
        return object()


class _Producer:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.sent: list[tuple[str, int, list]] = []
        self.futures: list[asyncio.Future] = []
        self.refuse_after: int | None = None  # send_batch raises once this many batches were taken

    def create_batch(self) -> _Builder:
        return _Builder(self.capacity)

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> asyncio.Future:
        if self.refuse_after is not None and len(self.sent) >= self.refuse_after:
            raise KafkaConnectionError("broker away")
        self.sent.append((topic, partition, batch.records))
        fut = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


async def test_records_leave_in_one_batch_per_topic_partition_in_append_order() -> None:
    producer = _Producer()
    batches = BatchProducer(lambda: producer, partitions=4, max_record_bytes=10_000)
    for i in range(6):
        batches.append("t", b"k%d" % (i % 2), b"v%d" % i)
    batches.append("dlq", None, b"x", headers=[("reason", b"not_json")])
    batches.append("dlq", None, b"y")
    assert await batches.send() == 8
    by_tp = {(t, p): recs for t, p, recs in producer.sent}
    assert by_tp[("t", key_partition(b"k0", 4))][0][1] == b"v0"  # keyed: the default partitioner's murmur2
    for key in (b"k0", b"k1"):
        values = [v for k, v, _ in by_tp[("t", key_partition(key, 4))] if k == key]
        assert values == [b"v%d" % i for i in range(6) if b"k%d" % (i % 2) == key]
    dlq = sorted(p for t, p, _ in producer.sent if t == "dlq")
    assert dlq == [0, 1]  # no key: round robin
    assert len(producer.sent) == len(by_tp)  # one batch per topic-partition
    assert await batches.send() == 0


async def test_a_full_batch_leaves_first_and_order_is_kept() -> None:
    producer = _Producer(capacity=2)
    batches = BatchProducer(lambda: producer, partitions=1, max_record_bytes=10_000)
    for i in range(5):
        batches.append("t", b"k", b"%d" % i)
    await batches.send()
    assert [[v for _, v, _ in recs] for _, _, recs in producer.sent] == [[b"0", b"1"], [b"2", b"3"], [b"4"]]


async def test_a_record_over_the_limit_is_refused_at_append() -> None:
    batches = BatchProducer(lambda: _Producer(), partitions=1, max_record_bytes=200)
    with pytest.raises(MessageSizeTooLargeError):
        batches.append("t", b"k", b"x" * 300)


async def test_undelivered_batches_are_reported_with_their_tags() -> None:
    producer = _Producer()
    batches = BatchProducer(lambda: producer, partitions=2, max_record_bytes=10_000)
    batches.append("t", b"a", b"1", partition=0, tag="a")
    batches.append("t", b"b", b"2", partition=1, tag="b")
    await batches.send()
    producer.futures[0].set_exception(KafkaConnectionError("lost"))
    producer.futures[1].set_result(None)
    await asyncio.sleep(0)
    assert batches.take_failures() == (1, ["a"])
    assert batches.take_failures() == (0, [])


async def test_batches_not_taken_by_the_producer_leave_with_the_next_send_in_order() -> None:
    producer = _Producer()
    producer.refuse_after = 1
    batches = BatchProducer(lambda: producer, partitions=2, max_record_bytes=10_000)
    batches.append("t", b"a", b"1", partition=0)
    batches.append("t", b"b", b"2", partition=1)
    with pytest.raises(KafkaConnectionError):
        await batches.send()
    batches.append("t", b"b", b"3", partition=1)
    producer.refuse_after = None
    await batches.send()
    assert [(p, [v for _, v, _ in recs]) for _, p, recs in producer.sent] == [(0, [b"1"]), (1, [b"2"]), (1, [b"3"])]


# -- a fake aiokafka consumer and the batch source -------------------------------------------


class _Record:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.value, self.timestamp = b"{}", None


class _Consumer:
    def __init__(self, topic: str, partitions: list[int]) -> None:
        self.topic = topic
        self.assigned = {TopicPartition(topic, p) for p in partitions}
        self.queue: list[dict] = []
        self.seeks: list[tuple[int, int]] = []
        self.commits: list[dict[int, int]] = []
        self.calls: list[str] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        return self.queue.pop(0) if self.queue else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))

    async def position(self, tp: TopicPartition) -> int:
        return 0

    async def commit(self, offsets: dict) -> None:
        self.calls.append("commit")
        self.commits.append({tp.partition: o for tp, o in offsets.items()})


class _Broker:
    def __init__(self, starts: dict[int, int]) -> None:
        self.starts = starts
        self.asked: list[tuple[str, ...]] = []

    async def start_offsets(self, topic: str, partitions: Any, groups: Any = ()) -> dict[int, int]:
        self.asked.append(tuple(groups))
        return {p: self.starts.get(p, 0) for p in partitions}


def _source(consumer: _Consumer, starts: dict[int, int], **kwargs: Any) -> tuple[BatchSource, list[list[int]]]:
    positions = ConsumerPositions(consumer.topic)
    positions.consumer = consumer
    source = OrderedSource(None, consumer.topic, "ingest", _Broker(starts), None, positions, ("g-ingest", "g-faust"))  # type: ignore[arg-type]
    processed: list[list[int]] = []

    async def process(records: Any) -> None:
        processed.append([r.offset for r in records])

    async def flush() -> None:
        consumer.calls.append("flush")

    async def held_back() -> None:
        consumer.calls.append("before_commit")

    def delivered() -> None:
        consumer.calls.append("delivered")

    options: dict[str, Any] = dict(process=process, flush=flush, before_commit=[held_back], delivered=delivered)
    options.update(kwargs)
    svc = BatchSource(consumer=lambda: consumer, source=source, batch_size=500, commit_interval_s=3600, hand_over_s=1.0, **options)
    svc.consumer = consumer
    return svc, processed


def _batch(topic: str, partition: int, offsets: range) -> dict:
    return {TopicPartition(topic, partition): [_Record(topic, partition, o) for o in offsets]}


async def test_a_batch_is_processed_in_order_and_committed_after_the_flush() -> None:
    consumer = _Consumer("in", [0, 1])
    svc, processed = _source(consumer, {0: 10, 1: 0})
    await svc.take_over({0, 1})
    assert consumer.seeks == [(0, 10), (1, 0)] or sorted(consumer.seeks) == [(0, 10), (1, 0)]
    assert svc.source.broker.asked[0] == ("g-ingest", "g-faust")  # its group first, then Faust's (an upgrade)
    consumer.queue.append({**_batch("in", 0, range(10, 13)), **_batch("in", 1, range(0, 2))})
    assert await svc.run_once() == 5  # the first run_once commits at once (the timer starts due)
    assert processed == [[10, 11, 12, 0, 1]]
    assert consumer.calls == ["before_commit", "flush", "delivered", "commit"]
    assert consumer.commits == [{0: 13, 1: 2}]


async def test_a_redelivered_record_is_skipped_and_a_gap_rewinds() -> None:
    consumer = _Consumer("in", [0])
    svc, processed = _source(consumer, {0: 5})
    await svc.take_over({0})
    consumer.queue.append(_batch("in", 0, range(3, 7)))  # 3, 4 below the cursor: replays
    await svc.run_once()
    assert processed == [[5, 6]]
    consumer.queue.append(_batch("in", 0, range(9, 10)))  # 7, 8 missing: a gap
    await svc.run_once()
    assert processed == [[5, 6]] and consumer.seeks[-1] == (0, 7)


async def test_an_undelivered_send_refuses_the_commit_and_restarts_the_partitions() -> None:
    consumer = _Consumer("in", [0])

    def undelivered() -> None:
        raise Undelivered("1 ingest records not delivered")

    svc, processed = _source(consumer, {0: 0}, delivered=undelivered)
    await svc.take_over({0})
    consumer.queue.append(_batch("in", 0, range(0, 3)))
    await svc.run_once()
    assert processed == [[0, 1, 2]]
    assert consumer.commits == []
    assert svc.source.guard.expected(0) == 0  # restarted from the commit: the records come again


async def test_a_failing_batch_is_not_committed() -> None:
    consumer = _Consumer("in", [0])

    async def boom(records: Any) -> None:
        raise RuntimeError("bug")

    svc, _ = _source(consumer, {0: 0}, process=boom)
    await svc.take_over({0})
    consumer.queue.append(_batch("in", 0, range(0, 3)))
    await svc.run_once()
    assert consumer.commits == [] and svc.source.guard.expected(0) == 0  # restarts from the commit


async def test_revocation_waits_for_the_batch_in_flight_then_commits_it() -> None:
    consumer = _Consumer("in", [0])
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(records: Any) -> None:
        entered.set()
        await release.wait()

    svc, _ = _source(consumer, {0: 0}, process=slow)
    svc._next_commit = float("inf")  # no periodic commit in this test
    await svc.take_over({0})
    consumer.queue.append(_batch("in", 0, range(0, 4)))
    batch = asyncio.ensure_future(svc.run_once())
    await entered.wait()
    hand_over = asyncio.ensure_future(svc.hand_over({0}))
    await asyncio.sleep(0.05)
    assert not hand_over.done()  # waits for the batch in flight
    release.set()
    await asyncio.gather(batch, hand_over)
    assert consumer.commits == [{0: 4}]  # the whole batch, committed while the partition was ours
    assert not svc.source.guard.knows(0)  # the next owner starts from that commit
