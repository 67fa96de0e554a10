"""The profiles stage's changelog writes (streams/profiles/sends.py): one record per key per
flush with the key's current value, lookups exact in between, nothing written for a partition
that is no longer ours, and a write whose batch was not delivered sent again before the commit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.ingest.dlq import DlqCodec
from streams.observability.metrics import Metrics
from streams.profiles.bundle import key_partition
from streams.profiles.sends import ProfileSends
from streams.settings import Settings
from tests.unit.kafka.test_batches import _Producer

EVENTS = "ns.profile-events"
CHANGELOG = "ns.touchpoint-profiles-changelog"


class _FaustProducer:
    def __init__(self, raw: _Producer) -> None:
        self.raw = raw
        self.singles: list[tuple[str, bytes, bytes]] = []

    def _ensure_producer(self) -> _Producer:
        return self.raw

    async def flush(self) -> None:
        for fut in self.raw.futures:
            if not fut.done():
                fut.set_result(None)

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, timestamp: Any, headers: Any) -> asyncio.Future:
        self.singles.append((topic, key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _sends(partitions: set[int]) -> tuple[ProfileSends, _Producer, dict]:
    raw = _Producer()
    data: dict[bytes, bytes] = {}
    table = SimpleNamespace(data=data, changelog_topic_name=CHANGELOG)
    consumer = SimpleNamespace(assignment=lambda: {TopicPartition(EVENTS, p) for p in partitions})
    app = SimpleNamespace(producer=_FaustProducer(raw), consumer=consumer)
    settings = Settings.from_env({}, namespace="ns", partitions=4)
    ctx = SimpleNamespace(dlq_codec=DlqCodec("k" * 32, False), metrics=Metrics(), settings=settings)
    return ProfileSends(app, table, EVENTS, "ns.touchpoints.dlq", ctx, data.get), raw, data  # type: ignore[arg-type]


def _records(raw: _Producer) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(p, k, v) for t, p, recs in raw.sent if t == CHANGELOG for k, v, _ in recs]


async def test_a_key_written_many_times_is_one_changelog_record_per_flush() -> None:
    sends, raw, data = _sends({0, 1})
    await sends.write(b"p1", b"v1", 0)
    await sends.write(b"p2", b"w1", 1)
    await sends.write(b"p1", b"v2", 0)
    assert data[b"p1"] == b"v2"  # a lookup reads the live value before any flush
    assert raw.sent == []
    assert await sends.flush_changelog() == 2
    assert sorted(_records(raw)) == [(0, b"p1", b"v2"), (1, b"p2", b"w1")]
    assert await sends.flush_changelog() == 0  # nothing pending: nothing sent again


async def test_keys_of_a_partition_no_longer_ours_are_not_written() -> None:
    sends, raw, _ = _sends({1})
    await sends.write(b"p1", b"v1", 0)
    await sends.write(b"p2", b"w1", 1)
    await sends.flush_changelog()
    assert _records(raw) == [(1, b"p2", b"w1")]


async def test_a_write_whose_batch_was_lost_is_sent_again_with_the_current_value_before_the_commit() -> None:
    sends, raw, data = _sends({0})
    await sends.write(b"p1", b"v1", 0)
    await sends.flush_changelog()
    raw.futures[0].set_exception(KafkaConnectionError("lost"))
    await sends.write(b"p1", b"v2", 0)
    data[b"p1"] = b"v2"
    await sends.repair()
    assert _records(raw)[0] == (0, b"p1", b"v1")
    # the next flush sent v2 in a batch; the lost v1 was repaired with the current value, awaited
    assert (0, b"p1", b"v2") in _records(raw)
    assert sends.app.producer.singles == [(CHANGELOG, b"p1", b"v2")]
    assert sends.dirty == {}


async def test_the_changelog_of_a_value_waits_for_its_public_records() -> None:
    """A replay skips a record whose value is in the changelog, so the profile-update that value
    published must be in Kafka first."""
    sends, raw, _ = _sends({0})
    public = asyncio.get_running_loop().create_future()
    sends.hold(public)
    await sends.write(b"p1", b"v1", 0)
    flush = asyncio.ensure_future(sends.flush_changelog())
    await asyncio.sleep(0.02)
    assert not flush.done() and _records(raw) == []
    public.set_result(None)
    assert await flush == 1
    assert _records(raw) == [(0, b"p1", b"v1")]


async def test_a_public_record_that_failed_is_counted_and_the_changelog_still_goes_out() -> None:
    sends, raw, _ = _sends({0})
    public = asyncio.get_running_loop().create_future()
    public.set_exception(KafkaConnectionError("gone"))
    sends.hold(public)
    await sends.write(b"p1", b"v1", 0)
    assert await sends.flush_changelog() == 1
    assert sends.events_failed._value.get() == 1
    assert _records(raw) == [(0, b"p1", b"v1")]


UPDATES = "ns.profile-updates"
AUDIENCES = "ns.audiences"


def _public(raw: _Producer) -> list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]]:
    return [(t, p, [(k, v) for k, v, _ in recs]) for t, p, recs in raw.sent if t != CHANGELOG]


async def test_public_records_leave_in_one_batch_per_topic_partition_and_land_before_the_changelog() -> None:
    sends, raw, _ = _sends({0, 1, 2, 3})
    sends.publish(UPDATES, b"p1", b"u1")
    sends.publish(AUDIENCES, b"p1", b"a1")
    sends.publish(UPDATES, b"p1", b"u2")
    await sends.write(b"p1", b"v2", 0)
    assert raw.sent == []  # nothing per record: the flush sends them
    flush = asyncio.ensure_future(sends.flush_changelog())
    await asyncio.sleep(0.02)
    assert sorted(_public(raw)) == sorted([(UPDATES, key_partition(b"p1", 4), [(b"p1", b"u1"), (b"p1", b"u2")]),
                                           (AUDIENCES, key_partition(b"p1", 4), [(b"p1", b"a1")])])
    assert not flush.done() and _records(raw) == []  # the changelog waits for their delivery
    for fut in raw.futures:
        fut.set_result(None)
    assert await flush == 1
    assert _records(raw) == [(0, b"p1", b"v2")]


async def test_a_public_batch_not_delivered_is_counted_and_the_changelog_still_goes_out() -> None:
    sends, raw, _ = _sends({0})
    sends.publish(UPDATES, b"p1", b"u1")
    await sends.write(b"p1", b"v1", 0)
    flush = asyncio.ensure_future(sends.flush_changelog())
    await asyncio.sleep(0.02)
    raw.futures[0].set_exception(KafkaConnectionError("gone"))
    assert await flush == 1
    assert sends.events_failed._value.get() == 1
    assert _records(raw) == [(0, b"p1", b"v1")]
    assert sends.public.take_failures() == (0, [])  # counted once, by the flush


async def test_public_records_the_producer_did_not_take_keep_their_values_back_until_they_are_sent() -> None:
    sends, raw, data = _sends({0})
    sends.publish(UPDATES, b"p1", b"u1")
    await sends.write(b"p1", b"v1", 0)
    raw.refuse_after = 0
    with pytest.raises(KafkaConnectionError):
        await sends.flush_changelog()
    assert raw.sent == [] and sends.pending == {b"p1": 0}
    raw.refuse_after = None
    await sends.write(b"p1", b"v2", 0)
    flush = asyncio.ensure_future(sends.flush_changelog())
    await asyncio.sleep(0.02)
    assert _public(raw) == [(UPDATES, key_partition(b"p1", 4), [(b"p1", b"u1")])] and _records(raw) == []
    for fut in raw.futures:
        fut.set_result(None)
    assert await flush == 1
    assert _records(raw) == [(0, b"p1", b"v2")]


def test_a_public_record_over_the_limit_is_counted_not_raised() -> None:
    sends, raw, _ = _sends({0})
    sends.publish(UPDATES, b"p1", b"x" * (sends.public._max_record_bytes + 1))
    assert sends.events_failed._value.get() == 1 and len(sends.public) == 0
