"""The collector's Kafka side: an idempotent producer (acks=all) that returns only after the ack."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.backoff import retry_until_ok
from streams.kafka import client as kafka_clients
from streams.kafka.topics import INPUT, ensure_topics
from streams.settings import Settings

__all__ = ["Record", "Publisher", "PublishError", "KafkaPublisher"]

log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes]
"""One Kafka record: (key, value)."""


class PublishError(RuntimeError):
    """Kafka is unavailable or did not acknowledge in time; the client should retry (HTTP 503)."""


class Publisher(Protocol):
    """What the HTTP app needs from its Kafka side (a fake in unit tests)."""

    @property
    def ready(self) -> bool: ...

    async def publish(self, records: Sequence[Record]) -> None: ...

    async def reachable(self) -> bool: ...


def _consume_result(fut: asyncio.Future) -> None:
    # A delivery that fails after we already answered 503 must not log "exception never retrieved".
    if not fut.cancelled():
        fut.exception()


class KafkaPublisher:
    """Publishes to the namespace's input topic with ``acks=all`` and ``enable_idempotence=True``.

    :meth:`publish` returns once the broker acknowledged every record, or raises
    :class:`PublishError`. A record whose ack came too late may still land: the client's retry
    then carries the same messageId and the worker counts it as a duplicate.
    """

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.topic(INPUT)
        self.timeout_s = settings.collector_publish_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self.last_error: str | None = None
        self._probe: tuple[float, bool] = (float("-inf"), False)  # (monotonic time, answer) of the last probe

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def reachable(self, timeout_s: float = 2.0, cache_s: float = 1.0) -> bool:
        """Whether a broker answers a metadata request now (at most one probe per ``cache_s``).

        Connected once is not enough for ``/readyz``: a load balancer must stop sending while
        Kafka is down, since every request would wait for the publish timeout and answer 503.
        """
        producer = self._producer
        if producer is None:
            return False
        loop = asyncio.get_running_loop()
        at, answer = self._probe
        if loop.time() - at < cache_s:
            return answer
        try:
            answer = bool(await asyncio.wait_for(producer.client.force_metadata_update(), timeout_s))
        except (TimeoutError, KafkaError, OSError):
            answer = False
        self._probe = (loop.time(), answer)
        return answer

    def _new_producer(self) -> AIOKafkaProducer:
        timeout_ms = int(self.timeout_s * 1000)
        return kafka_clients.producer(
            self.settings,
            linger_ms=2,  # small: each HTTP request waits for its own ack
            request_timeout_ms=max(timeout_ms, 1000),
            # one request may carry a whole HTTP batch; events are capped by max_event_bytes
            max_request_size=max(1 << 20, 2 * self.settings.collector_max_batch_bytes),
        )

    async def start(self) -> None:
        """One attempt: create missing topics, then connect the producer (raises on failure)."""
        try:
            await ensure_topics(self.settings, timeout_s=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a principal without create rights can still publish
            log.warning("could not check/create topics (%s); publishing to %s anyway", exc, self.topic)
        producer = self._new_producer()
        try:
            await asyncio.wait_for(producer.start(), self.timeout_s)
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self.last_error = None
        log.info("connected to Kafka at %s; publishing to %s", self.settings.kafka_bootstrap, self.topic)

    async def connect_forever(self, first_delay_s: float = 0.5, max_delay_s: float = 10.0) -> None:
        """Retry :meth:`start` with backoff until it succeeds (requests get 503 meanwhile)."""

        def remember(exc: BaseException) -> None:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

        if self._producer is None:
            await retry_until_ok(self.start, "Kafka (collector)", transient=(KafkaError, OSError, TimeoutError),
                                 first_delay_s=first_delay_s, max_delay_s=max_delay_s, on_retry=remember)

    async def publish(self, records: Sequence[Record]) -> None:
        """Send every record and wait for all acks within the publish timeout."""
        producer = self._producer
        if producer is None:
            raise PublishError("not connected to Kafka yet")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        futures: list[asyncio.Future] = []
        try:
            for key, value in records:
                # send() only waits when metadata is missing or the buffer is full
                fut = await asyncio.wait_for(producer.send(self.topic, value=value, key=key), max(0.001, deadline - loop.time()))
                fut.add_done_callback(_consume_result)
                futures.append(fut)
            if futures:
                _, pending = await asyncio.wait(futures, timeout=max(0.001, deadline - loop.time()))
                if pending:
                    raise PublishError(f"Kafka did not acknowledge within {self.timeout_s:g}s")
                for fut in futures:
                    fut.result()
        except TimeoutError:
            raise PublishError(f"Kafka did not accept the records within {self.timeout_s:g}s") from None
        except KafkaError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            raise PublishError(f"Kafka refused the records: {type(exc).__name__}") from exc

    async def stop(self) -> None:
        """Flush what is in flight and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
