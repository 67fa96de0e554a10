"""A Kafka destination's records go out without a round trip each (streams/activation/forwarder.py):
a fetched partition is sent at once and acknowledged together; from the first record not
delivered on, the records go one by one (retries, dead letter) in their order."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry, Counter

from streams.activation.destinations import Deliverer, DestinationDef
from streams.activation.forwarder import Forwarder
from streams.settings import Settings


class _Producer:
    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.sent: list[bytes] = []    # send(): not awaited one by one
        self.waited: list[bytes] = []  # send_and_wait(): the one-by-one path

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            fut.set_exception(KafkaTimeoutError())
        else:
            fut.set_result(None)
        self.sent.append(key or b"")
        return fut

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> None:
        self.waited.append(key or b"")


def _forwarder(producer: _Producer) -> tuple[Forwarder, Counter]:
    counter = Counter("deliveries", "d", ["destination", "outcome"], registry=CollectorRegistry())
    dest = DestinationDef(name="crm", kind="kafka", topic="crm-out", streams=("profile-updates",))
    f = Forwarder(Settings.from_env({}, namespace="ns", partitions=4), dest, counter)
    f.producer = producer  # type: ignore[assignment]

    async def no_sleep(_: float) -> None:
        return None
    f.deliverer = Deliverer(dest, f._kafka_send, sleep=no_sleep)
    return f, counter


def _records(n: int) -> list[Any]:
    return [SimpleNamespace(topic="ns.profile-updates", partition=0, offset=10 + i, key=b"p%d" % i,
                            value=orjson.dumps({"schema": "touchpoint.profile-update.v1", "type": "profile", "profile_id": f"p{i}",
                                                "ts_ms": 1, "profile": {}})) for i in range(n)]


def test_a_fetched_partition_is_sent_at_once_and_acknowledged_together() -> None:
    producer = _Producer()
    f, counter = _forwarder(producer)
    done: dict[Any, int] = {}
    asyncio.run(f._partition("tp", "profile-updates", _records(4), done))
    assert producer.sent == [b"p0", b"p1", b"p2", b"p3"] and producer.waited == []
    assert done == {"tp": 14}
    assert counter.labels("crm", "delivered")._value.get() == 4


def test_from_the_first_record_not_delivered_on_they_go_one_by_one_in_order() -> None:
    producer = _Producer(fail_at=1)
    f, counter = _forwarder(producer)
    done: dict[Any, int] = {}
    asyncio.run(f._partition("tp", "profile-updates", _records(4), done))
    assert producer.sent == [b"p0", b"p1", b"p2", b"p3"]
    assert producer.waited == [b"p1", b"p2", b"p3"]  # p2 and p3 again: the same idempotency keys
    assert done == {"tp": 14}
    assert counter.labels("crm", "delivered")._value.get() == 4
