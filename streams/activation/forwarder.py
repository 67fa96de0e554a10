"""Forwarding the public streams to one destination: a consumer group per destination
(``<ns>.destinations.NAME``) over ``<ns>.audiences`` / ``<ns>.profile-updates``.

In order per profile: records of one profile id are in one partition (keyed by profile id), and
each partition's records are delivered one after another (partitions in parallel). Never lost:
offsets are committed only after every record before them was delivered or written to
``<ns>.destinations.dlq`` (acknowledged by the broker); a crash re-delivers the uncommitted tail,
with the same idempotency keys, so a receiver that remembers keys applies each change once.
``touchpoint destinations redrive`` sends the dead letters again (:func:`redrive`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError

from streams.activation.destinations import Deliverer, Delivery, DestinationDef, Outcome, idempotency_key_for, request_body, webhook_sender
from streams.kafka import client as kafka_clients
from streams.kafka.reading import topic_partitions
from streams.kafka.topics import DESTINATIONS_DLQ
from streams.settings import Settings

__all__ = ["Forwarder", "redrive", "group_of"]

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 1.0


def group_of(settings: Settings, dest: DestinationDef) -> str:
    return f"{settings.namespace}.destinations.{dest.name}"


class Forwarder:
    """Delivers one destination's records; ``run()`` until ``stop()``."""

    def __init__(self, settings: Settings, dest: DestinationDef, counter: Any = None) -> None:
        self.settings = settings
        self.dest = dest
        self.counter = counter          # prometheus Counter with labels (destination, outcome), optional
        self._stop = asyncio.Event()
        self.producer: AIOKafkaProducer | None = None
        self.deliverer: Deliverer | None = None
        self._session: Any = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def start_clients(self) -> None:
        import aiohttp

        self.producer = kafka_clients.producer(self.settings)
        await self.producer.start()
        if self.dest.kind == "webhook":
            self._session = aiohttp.ClientSession()
            send = webhook_sender(self.dest, self.settings.webhook_secret, self._session, time.time)
        else:
            await self._ensure_topic()
            send = self._kafka_send
        self.deliverer = Deliverer(self.dest, send)

    async def _ensure_topic(self) -> None:
        """The Kafka destination's topic, created like the project's own (brokers may not auto-create)."""
        from aiokafka.admin import NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        s = self.settings
        admin = kafka_clients.admin_client(s)
        await admin.start()
        try:
            if s.topic(self.dest.topic) not in set(await admin.list_topics()):
                try:
                    await admin.create_topics([NewTopic(s.topic(self.dest.topic), num_partitions=s.partitions, replication_factor=s.replication_factor)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    async def close_clients(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.producer is not None:
            await self.producer.stop()

    async def _kafka_send(self, d: Delivery) -> tuple[bool, bool, str]:
        assert self.producer is not None
        try:
            await self.producer.send_and_wait(self.settings.topic(self.dest.topic), request_body(d), key=d.key.encode(),
                                              headers=[("tp.idempotency_key", d.idempotency_key.encode())])
            return True, False, ""
        except KafkaError as exc:
            return False, True, f"kafka: {type(exc).__name__}"

    async def handle(self, d: Delivery) -> Outcome:
        """Deliver one record, or dead-letter it (awaited) when delivery failed for good."""
        assert self.deliverer is not None and self.producer is not None
        outcome = await self.deliverer.deliver(d)
        if not outcome.delivered:
            headers = [("tp.destination", self.dest.name.encode()), ("tp.reason", outcome.reason.encode()),
                       ("tp.attempts", str(outcome.attempts).encode()), ("tp.source", d.source.encode()), ("tp.stream", d.stream.encode())]
            await self.producer.send_and_wait(self.settings.topic(DESTINATIONS_DLQ), request_body(d), key=d.key.encode(), headers=headers)
            log.warning("destination %s: %s dead-lettered after %d attempts: %s", self.dest.name, d.source, outcome.attempts, outcome.reason)
        if self.counter is not None:
            self.counter.labels(self.dest.name, "delivered" if outcome.delivered else "dead_lettered").inc()
        return outcome

    def _delivery(self, stream: str, r: Any) -> Delivery | None:
        """What is delivered of a fetched record, None when the destination does not want it."""
        record = None if r.value is None else orjson.loads(r.value)
        if not self.dest.wants(stream, record):
            return None
        record = self.dest.visible(stream, record)  # consent: the destination's purpose
        source = f"{r.topic}/{r.partition}/{r.offset}"
        key = r.key.decode() if r.key else ""
        return Delivery(stream, key, record, idempotency_key_for(stream, record, source), source)

    async def _partition(self, tp: Any, stream: str, records: list[Any], done: dict[Any, int]) -> None:
        if self.dest.kind == "kafka":
            records = await self._kafka_ahead(stream, records, tp, done)
        for r in records:  # in order: the next record of this partition waits for this one
            d = self._delivery(stream, r)
            if d is not None:
                await self.handle(d)
            done[tp] = r.offset + 1  # delivered or dead-lettered (acknowledged): safe to commit

    async def _kafka_ahead(self, stream: str, records: list[Any], tp: Any, done: dict[Any, int]) -> list[Any]:
        """A Kafka destination: every record of the fetched partition is sent at once (no round
        trip each; the producer keeps their order within a partition) and the acks awaited
        together. Returns the records from the first one not delivered on: they go one by one
        (retries, dead letter), in order, the ones after it again (same idempotency keys)."""
        assert self.producer is not None
        topic = self.settings.topic(self.dest.topic)
        sent: list[tuple[Any, Delivery | None, Any]] = []
        for r in records:
            d = self._delivery(stream, r)
            if d is None:
                sent.append((r, None, None))
                continue
            try:
                fut = await self.producer.send(topic, request_body(d), key=d.key.encode(),
                                               headers=[("tp.idempotency_key", d.idempotency_key.encode())])
            except KafkaError:
                break  # this one and the rest: one by one below
            sent.append((r, d, fut))
        results = await asyncio.gather(*(fut for _, _, fut in sent if fut is not None), return_exceptions=True)
        acks = iter(results)
        for i, (r, d, fut) in enumerate(sent):
            if fut is not None and isinstance(next(acks), BaseException):
                return records[i:]
            if d is not None and self.counter is not None:
                self.counter.labels(self.dest.name, "delivered").inc()
            done[tp] = r.offset + 1
        return records[len(sent):]

    async def _commit(self, consumer: AIOKafkaConsumer, done: dict[Any, int]) -> None:
        if not done:
            return
        try:
            await consumer.commit(dict(done))
        except CommitFailedError:
            log.info("destination %s: partitions moved before the commit; the new owner re-delivers (same keys)", self.dest.name)
        done.clear()

    async def _process(self, consumer: AIOKafkaConsumer, topics: dict[str, str], batches: dict[Any, list[Any]]) -> None:
        """Deliver a fetched batch, committing progress every COMMIT_EVERY_S while it takes long
        (a slow or failing receiver): a crash then re-delivers at most that much."""
        done: dict[Any, int] = {}
        work = asyncio.ensure_future(asyncio.gather(*(self._partition(tp, topics[tp.topic], records, done) for tp, records in batches.items())))
        try:
            while True:
                finished, _ = await asyncio.wait({work}, timeout=COMMIT_EVERY_S)
                if finished:
                    work.result()
                    break
                await self._commit(consumer, done)
        finally:
            if not work.done():
                work.cancel()
        await self._commit(consumer, done)

    async def run(self) -> None:
        s = self.settings
        topics = {s.topic(stream): stream for stream in self.dest.streams}
        consumer = kafka_clients.group_consumer(s, *topics, group_id=group_of(s, self.dest), max_poll_interval_ms=600_000)
        await self.start_clients()
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                if not batches:
                    continue
                await self._process(consumer, topics, batches)
        finally:
            await consumer.stop()
            await self.close_clients()


async def redrive(settings: Settings, dest: DestinationDef, timeout_s: float = 120.0) -> tuple[int, int]:
    """Send this destination's dead letters again, once each: ``(delivered, dead-lettered again)``.

    A group per destination (``<ns>.destinations.NAME.redrive``) remembers how far the dead-letter
    topic was redriven; a record failing again is appended to the topic again (and so redriven next time)."""
    topic = settings.topic(DESTINATIONS_DLQ)
    tps = await topic_partitions(settings, [topic])
    forwarder = Forwarder(settings, dest)
    consumer = kafka_clients.group_consumer(settings, group_id=f"{group_of(settings, dest)}.redrive")
    await consumer.start()
    await forwarder.start_clients()
    ok = failed = 0
    try:
        if not tps:
            return 0, 0
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=200)
            for tp, records in batches.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        break
                    headers = {k: v.decode() for k, v in (r.headers or ())}
                    if headers.get("tp.destination") != dest.name:
                        continue
                    body = orjson.loads(r.value)
                    d = Delivery(body["stream"], body["key"], body["record"], body["idempotency_key"], headers.get("tp.source", ""))
                    outcome = await forwarder.handle(d)
                    ok, failed = (ok + 1, failed) if outcome.delivered else (ok, failed + 1)
                upto = min(records[-1].offset + 1, ends[tp])
                await consumer.commit({tp: upto})
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if pending:
            raise TimeoutError(f"redrive of {dest.name} did not reach the end of {topic} within {timeout_s:.0f}s")
        return ok, failed
    finally:
        await consumer.stop()
        await forwarder.close_clients()
