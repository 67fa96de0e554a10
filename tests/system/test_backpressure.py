"""Back-pressure: when Redis or the broker is slow or gone, valid events are never dead-lettered
for it; the pipeline waits with bounded backoff, says so in metrics and logs, and catches up.

Unit level: the ingest stage with a sink whose sends fail transiently (Kafka unavailable) and a
resolver that times out (Redis unavailable). Integration: a worker on the private system stack
while Redis is paused (CLIENT PAUSE, longer than the client timeout), Redis is stopped, and the
broker is stopped.
"""

from __future__ import annotations

import asyncio
import signal
import time

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.rules import IdentityRules
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.ingest.stage import IngestStage, RawRecord
from streams.observability.metrics import Metrics
from streams.profiles.bundle import decoded_items
from streams.resilience import TRANSIENT
from tests.system.conftest import ensure_up
from tests.system.test_crash import metric
from tests.system.verifier import dead_letters, make_traffic, publish_records, verify, wait_idle
from touchpoint_tools.devstack import stack as devstack

NOW = 1_767_225_600_000


class FlakyResolver:
    """Redis that is unavailable for the first ``fail`` calls."""

    def __init__(self, fail: int) -> None:
        self.graph = MemoryIdentityGraph(IdentityRules())
        self.fail = fail
        self.calls = 0

    async def resolve_batch(self, requests):
        self.calls += 1
        if self.calls <= self.fail:
            raise RedisConnectionError("Connection refused")
        return self.graph.resolve_batch(requests)


class FlakySink:
    """Kafka that refuses every kind of send a few times before accepting it."""

    def __init__(self, fail_each: int) -> None:
        self.fail_each = fail_each
        self.failures: dict[str, int] = {}
        self.events: list = []
        self.letters: list = []
        self.counts: list = []
        self.changes: list = []

    def _maybe_fail(self, kind: str) -> None:
        n = self.failures.get(kind, 0)
        if n < self.fail_each:
            self.failures[kind] = n + 1
            raise (KafkaConnectionError if n % 2 else KafkaTimeoutError)()

    async def applied(self, key, value, partition=None):
        self._maybe_fail("applied")
        self.events.extend(record for _, record in decoded_items(key, value))

    async def dead_letter(self, letter):
        self._maybe_fail("dead_letter")
        self.letters.append(letter)

    async def demand(self, key, value):
        self._maybe_fail("demand")
        self.counts.append(value)

    async def identity_change(self, key, value):
        self._maybe_fail("identity")
        self.changes.append(value)


def _stage(resolver, sink) -> tuple[IngestStage, Metrics]:
    metrics = Metrics()
    stage = IngestStage(max_event_bytes=32768, normalizer=Normalizer(PiiHasher("k")), resolver=resolver, codec=DlqCodec("k"),
                        sink=sink, metrics=metrics, clock_ms=lambda: NOW, transient=TRANSIENT)
    return stage, metrics


def _records() -> list[RawRecord]:
    values = [orjson.dumps({"type": "track", "messageId": f"m{i}", "event": "Product Viewed", "userId": f"u{i % 3}",
                            "anonymousId": f"a{i}", "channel": "app", "timestamp": "2026-01-01T00:01:00Z",
                            "properties": {"region": "hubei", "products": [{"product_id": "p1", "category": "masks"}]}}) for i in range(6)]
    values.append(b"{not json")
    return [RawRecord(v, "ns.touchpoints", 0, i, NOW) for i, v in enumerate(values)]


@pytest.mark.system
def test_redis_unavailable_is_waited_out_not_dead_lettered():
    sink = FlakySink(0)
    stage, metrics = _stage(FlakyResolver(fail=4), sink)
    started = time.monotonic()
    asyncio.run(stage.process_batch(_records()))
    assert len(sink.events) == 6 and len(sink.letters) == 1  # only the poison record
    assert metrics.dependency_retries.labels("redis")._value.get() == 4
    assert time.monotonic() - started < 3  # backoff 0.05, 0.1, 0.2, 0.4 s


@pytest.mark.system
def test_kafka_unavailable_on_send_is_waited_out_not_dead_lettered():
    """Regression: a transient send failure used to dead-letter a valid event as
    processing_error (emit) or escape process_batch (audit, dead letter, demand sends), which
    makes Faust ack the whole batch: lost events."""
    sink = FlakySink(2)
    stage, metrics = _stage(FlakyResolver(fail=0), sink)
    asyncio.run(stage.process_batch(_records()))
    asyncio.run(stage.flush_demand())  # what the worker does before each commit
    assert [e["message_id"] for e in sink.events if "message_id" in e and "control" not in e] == [f"m{i}" for i in range(6)]
    assert len(sink.letters) == 1 and dict(sink.letters[0].headers)["tp.reason"] == b"not_json"
    assert sink.counts and sink.changes
    assert metrics.dependency_retries.labels("kafka")._value.get() == 8  # 2 per kind of send
    assert metrics.applied._value.get() == 6 and metrics.dead_lettered._value.get() == 1


@pytest.mark.system
@pytest.mark.integration
def test_worker_waits_for_redis_and_broker_and_catches_up(system_stack, sys_settings, start_worker):
    started = time.monotonic()
    cfg = system_stack.cfg
    traffic = make_traffic(seed=21, n_people=100, n_events=2400, bad_rate=0.0)  # only valid events
    chunks = traffic.chunks(3)
    worker = start_worker(sys_settings)
    redis = Redis.from_url(sys_settings.redis_url)
    phases = {}
    try:
        # 1. Redis paused longer than the worker's socket timeout (10 s): calls time out and are retried.
        #    The dependency goes first, then the traffic, so the worker certainly meets the outage.
        redis.execute_command("CLIENT", "PAUSE", "13000", "ALL")
        publish_records(sys_settings, chunks[0])
        time.sleep(14)
        phases["redis_paused_retries"] = metric(worker.get("/metrics")[1].decode(), "touchpoint_dependency_retries_total", dependency="redis")

        # 2. Redis stopped for 8 s.
        devstack.kill(cfg, "redis", signal.SIGTERM)
        publish_records(sys_settings, chunks[1])
        time.sleep(8)
        assert worker.proc.poll() is None, worker.log_tail()
        assert not dead_letters(sys_settings), "valid events were dead-lettered while Redis was down"
        devstack.start(cfg, "redis", timeout_s=60)
        wait_idle(sys_settings, worker)
        text = worker.get("/metrics")[1].decode()
        phases["redis_total_retries"] = metric(text, "touchpoint_dependency_retries_total", dependency="redis")

        # 3. The broker stopped for 10 s while the worker has work in flight.
        publish_records(sys_settings, chunks[2])
        devstack.kill(cfg, "kafka", signal.SIGTERM)
        time.sleep(10)
        assert worker.proc.poll() is None, worker.log_tail()
        devstack.start(cfg, "kafka", timeout_s=120)
    finally:
        redis.close()
        ensure_up(system_stack)
    wait_idle(sys_settings, worker, timeout_s=180)
    report = verify(sys_settings, traffic)
    assert report.dead_letter_records == 0
    log = worker.log_path.read_text(errors="replace")
    assert "redis unavailable" in log
    phases["log_lines"] = log.count("\n")
    # Bounded backoff: at most ~1 attempt per 5 s once capped, never a hot loop.
    assert 0 < phases["redis_paused_retries"] <= 10 and phases["redis_total_retries"] <= 40, phases
    print(f"\n[back-pressure: redis paused 13 s, redis down 8 s, broker down 10 s; {phases}] {report.line()};"
          f" total {time.monotonic() - started:.0f}s")
