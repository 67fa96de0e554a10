"""The no-framework reference: our stages on plain aiokafka batches, no Faust.

The same work as the worker, with the same stage code and topics, wired by hand:

1. ingest: ``getmany`` batches (up to ``TOUCHPOINT_BATCH_SIZE`` records, no wait window) through
   :class:`streams.ingest.stage.IngestStage` built as the worker builds it (streams/ingest/agent.py:
   decode, validate, normalise, dedup and identity in Redis with the worker's scripts, the
   event-time window, re-admission of erased people, the audit's identifiers sealed with data keys
   published on identity.keys and marked published after the flush, profile-events bundles,
   identity.changes, DLQ, demand counts flushed before each commit), producing through one
   ``AIOKafkaProducer``;
2. profiles: ``getmany`` on the namespace's profile-events, every bundle item through
   :class:`streams.profiles.stage.ProfileStage` wrapped by the worker's activation stage (same
   definitions file, ``TOUCHPOINT_TRAITS``: computed traits, audiences, the public profile update
   on profile-updates), sends awaited when the write depends on them, the public records awaited
   before the changelog records of the values they publish (as the worker), the value kept in a
   dict and written to a compacted changelog topic once per key per batch (item 3 of issue 19);
3. demand: ``getmany`` on demand-counts through :class:`streams.demand.stage.DemandStage`
   (alerts produced, its two tables written to a changelog once per key per batch).

Offsets are committed every second after the producer flushed (at-least-once, as ours). Its
outputs and Redis keys live in the bench's fresh namespace (the environment), the input is the
1-worker run's topic (``--topic``). Timed from the first input record to the moment every stage
caught up and the final flush and commits returned. It is the yardstick of what our stages cost
without a framework: not a product (no rebalance hand-over, no recovery from the changelogs, no
in-order guard, no re-evaluation timer, no HTTP server). Until session 8 it ran neither the audit
sealing nor activation, ~95 us per event of stage work the worker does (docs/performance.md,
"Session 8").
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic

from streams.activation import wiring as activation_wiring
from streams.app import WorkerContext
from streams.demand.dimensions import parse_dimensions, parse_measures
from streams.demand.stage import DemandStage, StageConfig
from streams.identity.data_keys import RedisKeyStore, RedisReadmitter
from streams.identity.sealing import AuditSealer
from streams.ingest.dlq import DeadLetter
from streams.ingest.eventtime import EventTimeWindow
from streams.ingest.stage import IngestStage, RawRecord
from streams.kafka import topics as T
from streams.kafka.client import admin_client, client_options, producer
from streams.kafka.topics import ensure_topics
from streams.profiles.bundle import key_partition, position, unbundle
from streams.profiles.profile import Limits
from streams.profiles.stage import ProfileStage
from streams.settings import Settings
from touchpoint_tools.bench.pipeline.peers import peer_args, peer_result

COMMIT_EVERY_S = 1.0


class Sink:
    """IngestStage's sink on a plain producer: sends are not awaited one by one; the flush
    before each commit covers them (as the worker's ProducerSink)."""

    def __init__(self, prod: Any, s: Settings) -> None:
        self.prod, self.s = prod, s

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        await self.prod.send(self.s.topic(T.PROFILE_EVENTS), value, key=key, partition=partition)

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.prod.send(self.s.topic(T.DLQ), letter.value, headers=list(letter.headers or []))

    async def demand(self, key: bytes, value: bytes) -> None:
        await self.prod.send(self.s.topic(T.DEMAND_COUNTS), value, key=key)

    async def identity_change(self, key: bytes, value: bytes) -> None:
        await self.prod.send(self.s.topic(T.IDENTITY_CHANGES), value, key=key, partition=key_partition(key, self.s.partitions))

    async def data_key(self, key: bytes, value: bytes | None) -> None:
        await self.prod.send(self.s.topic(T.IDENTITY_KEYS), value, key=key)


class Loop:
    """One consumer, one stage: batches until stopped, commits every second after a flush."""

    def __init__(self, s: Settings, topic: str, group: str, prod: Any, handle: Callable[[list[Any]], Awaitable[None]],
                 before_commit: Callable[[], Awaitable[Any]] | None = None,
                 after_flush: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.consumer = AIOKafkaConsumer(topic, **client_options(s), group_id=group, auto_offset_reset="earliest",
                                         enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
        self.topic, self.prod, self.handle, self.before_commit = topic, prod, handle, before_commit
        self.after_flush = after_flush  # what may only happen once the sends landed (data keys marked published)
        self.batch = s.batch_size
        self.records = 0
        self.first_t: float | None = None
        self.first_cpu = 0.0
        self.last_commit = time.monotonic()
        self.dirty = False  # records handled since the last commit

    async def commit(self) -> None:
        if self.before_commit is not None:
            await self.before_commit()
        await self.prod.flush()
        if self.after_flush is not None:
            await self.after_flush()
        await self.consumer.commit()
        self.last_commit = time.monotonic()
        self.dirty = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=20, max_records=self.batch)
            records = [r for recs in batches.values() for r in recs]
            if records:
                if self.first_t is None:
                    self.first_t, self.first_cpu = time.perf_counter(), time.process_time()
                await self.handle(records)
                self.records += len(records)
                self.dirty = True
            if (self.dirty and not records) or time.monotonic() - self.last_commit >= COMMIT_EVERY_S:
                await self.commit()  # every second, and whenever the input runs dry

    async def caught_up(self) -> bool:
        """Everything on the topic handled and committed."""
        parts = self.consumer.assignment()
        if not parts or self.dirty:
            return False
        ends = await self.consumer.end_offsets(list(parts))
        for tp, end in ends.items():
            if await self.consumer.position(tp) < end:
                return False
        return True


async def ensure_changelog(s: Settings, name: str) -> None:
    admin = admin_client(s)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                                                topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()


def profiles_handler(s: Settings, prod: Any, changelog: str, activation: Any) -> Callable[[list[Any]], Awaitable[None]]:
    profile_stage = ProfileStage(Limits(max_bytes=s.profile_max_bytes))
    stage: Any = activation.wrap(profile_stage) if activation is not None else profile_stage
    store: dict[bytes, bytes] = {}
    topic = s.topic(T.PROFILE_EVENTS)
    public_topics = {logical: s.topic(logical) for logical in (T.PROFILE_UPDATES, T.AUDIENCES)}

    async def handle(records: list[Any]) -> None:
        dirty: dict[bytes, int] = {}  # key -> partition of its last record (written once per batch)
        landing: list[Any] = []
        public: list[Any] = []

        def publish(logical: str, key: bytes, value: bytes | None) -> None:
            public.append(prod.send(public_topics.get(logical) or s.topic(logical), value, key=key))

        for message in records:
            staged: dict[bytes, tuple[bytes, Any]] = {}  # this record's new values, settled per record as the worker does
            before: dict[bytes, bytes | None] = {}
            for index, (key, record) in enumerate(unbundle(message.key, message.value)):
                if not key:
                    continue
                current = store.get(key)
                decision = stage.decide(key.decode(), current, record, position(message.offset, index))
                for send in decision.sends:
                    fut = await prod.send(topic, send.value, key=send.key.encode())
                    if send.must_land:
                        landing.append(fut)
                if decision.value is not None:
                    before.setdefault(key, current)
                    store[key] = decision.value
                    staged[key] = (decision.value, None)
                    dirty[key] = message.partition
            if activation is not None and staged:
                activation.settle(staged, before.get, publish)
                for key, (value, _) in staged.items():
                    store[key] = value
        futures = [await send for send in public]  # handed to the producer in order
        if landing or futures:  # must-land sends and public records before the changelog records of the values
            await asyncio.gather(*landing, *futures)
        for key, partition in dirty.items():
            await prod.send(changelog, store[key], key=key, partition=partition)

    return handle


def demand_handler(s: Settings, prod: Any, changelog: str, metrics: Any) -> Callable[[list[Any]], Awaitable[None]]:
    state: dict[str, Any] = {}
    clocks: dict[str, Any] = {}
    stage = DemandStage(StageConfig.from_settings(s, worker="reference"), state, clocks, metrics)

    async def handle(records: list[Any]) -> None:
        dirty: dict[str, int] = {}
        for message in records:
            outcome = stage.process(message.partition, message.value)
            for alert in outcome.alerts:
                await prod.send(s.topic(T.ALERTS), orjson.dumps(alert), key=alert["key"].encode())
            stage.commit(outcome)
            for key in outcome.writes:
                dirty[key] = message.partition
            if outcome.clock is not None:
                dirty["clock:" + outcome.clock[0]] = message.partition
        for key, partition in dirty.items():
            value = clocks.get(key[6:]) if key.startswith("clock:") else state.get(key)
            await prod.send(changelog, orjson.dumps(value), key=key.encode(), partition=partition)

    return handle


async def run(s: Settings, topic: str, group: str, expect: int, timeout_s: float) -> dict[str, Any]:
    await ensure_topics(s)
    prof_log, demand_log = f"{s.app_id}-profiles-changelog", f"{s.app_id}-demand-changelog"
    await ensure_changelog(s, prof_log)
    await ensure_changelog(s, demand_log)
    ctx = WorkerContext.build(s)  # the worker's Prometheus metrics: the same per-event cost
    prod = producer(s, linger_ms=5, max_batch_size=256 * 1024)
    await prod.start()
    sink = Sink(prod, s)
    # Built as streams/ingest/agent.py builds the worker's (sealing, re-admission, event-time window).
    sealer = AuditSealer(RedisKeyStore(ctx.identity.redis, s.namespace), s.pii_key, sink.data_key)
    stage = IngestStage(max_event_bytes=s.max_event_bytes, normalizer=ctx.normalizer, resolver=ctx.identity, codec=ctx.dlq_codec,
                        sink=sink, metrics=ctx.metrics, sealer=sealer, readmitter=RedisReadmitter(ctx.identity.redis, s.namespace),
                        demand_bucket_s=s.demand_bucket_s,
                        demand_dimensions=parse_dimensions(s.demand_dimensions), demand_measures=parse_measures(s.demand_measures),
                        demand_currency=s.demand_currency, profile_partitions=s.partitions,
                        window=EventTimeWindow(s.event_max_future_s * 1000, s.event_max_past_s * 1000,
                                               ctx.metrics.event_time_corrected.labels("future")))
    activation = activation_wiring.prepare(ctx)  # the worker's definitions (TOUCHPOINT_TRAITS)

    async def ingest(records: list[Any]) -> None:
        await stage.process_batch([RawRecord(r.value, r.topic, r.partition, r.offset, r.timestamp) for r in records])

    loops = [Loop(s, topic, group, prod, ingest, stage.flush_demand, sealer.confirm),
             Loop(s, s.topic(T.PROFILE_EVENTS), f"{group}-profiles", prod, profiles_handler(s, prod, prof_log, activation)),
             Loop(s, s.topic(T.DEMAND_COUNTS), f"{group}-demand", prod, demand_handler(s, prod, demand_log, ctx.metrics))]
    for loop in loops:
        await loop.consumer.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
    deadline = time.monotonic() + timeout_s
    timed_out = False
    try:
        while True:
            await asyncio.sleep(0.05)
            for task in tasks:
                if task.done():
                    task.result()  # a stage failed: raise it
            # ingest committed (its last demand counts and bundles flushed), then downstream caught up
            if loops[0].records >= expect and not loops[0].dirty and all([await loop.caught_up() for loop in loops[1:]]):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
        stop.set()
        await asyncio.gather(*tasks)
        end_t, end_cpu = time.perf_counter(), time.process_time()  # every stage flushed and committed
    finally:
        stop.set()
        for loop in loops:
            await loop.consumer.stop()
        await prod.stop()
        await ctx.redis.aclose()
    first_t = loops[0].first_t
    if first_t is None:
        return peer_result(0, 0, 0.0, 0.0, True, peer="reference")
    return peer_result(loops[0].records, loops[0].records, end_t - first_t, end_cpu - loops[0].first_cpu, timed_out, peer="reference",
                       profile_records=loops[1].records, demand_records=loops[2].records)


def main() -> int:
    args = peer_args(__doc__.splitlines()[0]).parse_args()
    s = Settings.from_env()
    result = asyncio.run(run(s, args.topic, args.group, args.expect, args.timeout))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if not result["timed_out"] else 1


if __name__ == "__main__":
    sys.exit(main())
