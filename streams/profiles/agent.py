"""The profiles agent: thin Faust wiring of :class:`ProfileStage` to the ``profiles`` table.

One record at a time (table writes are impossible inside ``take()``); a record is usually a
bundle of one ingest batch's events for this partition (``bundle.py``), ``concurrency=1`` (Faust
can commit past an in-flight event otherwise, faust#606), and every record in its own
try/except: Faust acks a record whose processing raised, so an escaping exception would lose it
silently; here it is logged and counted instead (DESIGN.md, Faust traps).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiokafka.errors import KafkaError

from streams.events.reasons import Reason
from streams.identity.model import parse
from streams.kafka import topics as T
from streams.kafka.ordering import Admitted
from streams.profiles.bundle import key_partition, position, unbundle
from streams.profiles.profile import Limits, is_tomb_bytes
from streams.profiles.sends import ProfileSends
from streams.profiles.stage import OUTCOMES, ProfileStage

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register", "TABLE", "changelog_topic"]

log = logging.getLogger(__name__)

TABLE = "profiles"
GAUGE_EVERY_S = 10.0


def changelog_topic(app_id: str) -> str:
    """Faust's name for the table's compacted changelog (``{app_id}-{table}-changelog``)."""
    return f"{app_id}-{TABLE}-changelog"


def register(app: faust.App, ctx: WorkerContext) -> faust.types.TableT:
    """Declare the ``profiles`` table, agent and timers on ``app``; returns the table."""
    s = ctx.settings
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    source, ordered = ctx.sources().topic(s.topic(T.PROFILE_EVENTS), "profiles", **raw)
    # Values are our own orjson bytes: compact in memory, no Faust model metadata (DESIGN.md traps),
    # and the HTTP view can render them without a second serializer. Keys are the profile id as
    # raw bytes, exactly the input's key bytes, so the table is co-partitioned with profile-events
    # (a str key would be JSON-quoted in the changelog and hash to other partitions).
    table = app.Table(TABLE, key_type=bytes, value_type=bytes,  # bytes = Faust's "raw" codec
                      partitions=s.partitions, help="live profile per profile id (tombstones for merged/erased)",
                      # an erased profile's earlier values leave the changelog within a day (docs/identity.md, rights)
                      extra_topic_configs={"max.compaction.lag.ms": str(86_400_000)})
    ctx.profiles_table = table
    worker = ProfilesWorker(app, ctx, table)
    ctx.sources().before_commit.append(worker.sends.repair)

    @app.agent(source, name="profiles", concurrency=1)
    async def profiles(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            async with ordered.admitted([message]) as batch:
                if not batch.keep:  # a re-delivery, or a gap being rewound over
                    continue
                await worker.process(message, batch)
                worker.seconds.observe(time.perf_counter() - started)
            worker.flush_if_due()

    @app.timer(worker.flush_every)
    async def _flush_idle() -> None:
        """Changelog records of the last changes go out even when no record follows them."""
        worker.flush_if_due()

    @app.timer(GAUGE_EVERY_S)
    async def count_live() -> None:
        worker.count_live()

    return table


Staged = dict[bytes, tuple[bytes, int | None]]  # key -> (new value, identifiers it holds)
Landing = list[tuple[Awaitable[Any], int]]  # (delivery, item index; -1 for a public record)


class ProfilesWorker:
    """What the profiles agent does with one record, and its timers (the agent stays wiring).

    Holds the stage (wrapped by activation when it is on), the sends, the table and the metrics.
    """

    def __init__(self, app: faust.App, ctx: WorkerContext, table: Any) -> None:
        s = ctx.settings
        self.app, self.settings, self.table = app, s, table
        rules = getattr(ctx.identity, "rules", None)
        keep = (lambda f: not rules.is_blocked(parse(f))) if rules is not None else None
        self.profile_stage = ProfileStage(Limits(max_bytes=s.profile_max_bytes), keep_identifier=keep)
        self.stage: Any = self.profile_stage
        self.activation = ctx.activation  # streams/activation/wiring.py: traits, audiences, profile-updates
        if self.activation is not None:
            self.stage = self.activation.wrap(self.profile_stage)
        m = self.metrics = ctx.metrics
        self.counted = {o: m.profile_records.labels(o) for o in (*OUTCOMES, "error")}
        self.seconds = m.batch_seconds.labels("profiles")
        for child in self.counted.values():
            child.inc(0)
        self.direct = s.store.startswith("memory")
        self.sends = ProfileSends(app, table, s.topic(T.PROFILE_EVENTS), s.topic(T.DLQ), ctx, self.stored)
        self.flush_every = s.batch_within_s
        self.next_flush = 0.0
        self.partition_cache: dict[bytes, int] = {}
        self.public_topics: dict[str, str] = {}  # logical activation topic -> namespaced name

    def stored(self, key: bytes) -> bytes | None:
        # The memory store's dict read directly: Table.get adds a sensor call and two lookups per
        # item. (table.data is only touched here, at run time: it builds the store and resolves
        # the event loop, which must not happen before the worker picks uvloop.)
        return self.table.data.get(key) if self.direct else self.table.get(key)

    def publish(self, logical: str, key: bytes, value: bytes | None) -> None:
        """A record on one of the activation topics, batched (memory store: see _settle_public)."""
        topic = self.public_topics.get(logical)
        if topic is None:
            topic = self.public_topics[logical] = self.settings.topic(logical)
        self.sends.publish(topic, key, value)

    async def apply(self, key: bytes | None, record: Any, pos: int, message: Any, staged: Staged,
                    landing: Landing, outcomes: dict[str, int], index: int) -> None:
        """One record (or bundle item): decide, send, stage the new value (written per record)."""
        if not key:
            outcomes["invalid"] += 1
            return
        current = staged.get(key)
        decision = self.stage.decide(key.decode(), current[0] if current is not None else self.stored(key), record, pos)
        sends = self.sends
        for send in decision.sends:
            # Straight through the producer (no Faust FutureMessage); delivery of the ones the
            # writes depend on is awaited before the writes, the rest by the flush before commit.
            fut = await sends.forward(send.key, send.value)
            if send.must_land:
                landing.append((fut, index))
            else:
                fut.add_done_callback(partial(sends.forward_done, send.key, send.value))
        if decision.value is not None:
            staged[key] = (decision.value, decision.identifiers)
        outcomes[decision.outcome] += 1
        if decision.outcome == "invalid":
            log.warning("profiles: invalid record at %s/%s/%s: %s", message.topic, message.partition, message.offset, decision.detail)

    async def decide_record(self, message: Any) -> tuple[Staged, dict[str, int]]:
        """Decide every item of one record and land the sends its writes depend on.

        An item Kafka refuses for good (a must-land absorb or a send refused as too large) is
        dead-lettered with its reason and the record decided again without it, so one poison
        item can never wedge the partition (issue 21); the other items and profiles go on.
        Kafka unavailable: raises (the partition restarts from its commit and retries).
        """
        items = unbundle(message.key, message.value)
        skip: set[int] = set()
        errors = 0
        while True:
            staged: Staged = {}
            landing: Landing = []
            outcomes: dict[str, int] = defaultdict(int)  # counted once per record, not per item
            errors += await self._decide_items(message, items, skip, staged, landing, outcomes)
            if self.activation is not None and staged:
                await self._settle_public(staged, landing, record_time_ms(message))
            # The writes make a replay skip this record, so the absorbs (and forwarded erasures)
            # they depend on must be in Kafka first: one wait per record, not one per merge.
            refused = await self._land(landing, message)
            if not refused:
                outcomes["error"] += errors
                return staged, outcomes
            for index, exc in refused:
                self.sends.events_failed.inc()
                errors += 1
                skip.add(index)
                key, record = items[index]
                await self.sends.dead_letter(_item_bytes(key, record),
                                             f"item {index}: a record it sends was refused: {type(exc).__name__}", message)

    async def _decide_items(self, message: Any, items: list[tuple[bytes | None, Any]], skip: set[int], staged: Staged,
                            landing: Landing, outcomes: dict[str, int]) -> int:
        """Apply every item not skipped; an item that raises is dead-lettered and skipped. Returns the errors."""
        errors = 0
        for index, (key, record) in enumerate(items):
            if index in skip:
                continue
            try:
                await self.apply(key, record, position(message.offset, index), message, staged, landing, outcomes, index)
            except Exception as exc:
                if isinstance(exc, KafkaError) and exc.retriable:
                    raise
                log.exception("profiles: could not process %s/%s/%s item %d", message.topic, message.partition, message.offset, index)
                errors += 1
                skip.add(index)
                await self.sends.dead_letter(_item_bytes(key, record), f"item {index}: {type(exc).__name__}: {exc}", message,
                                             Reason.REFUSED_BY_BROKER if isinstance(exc, KafkaError) else Reason.PROCESSING_ERROR)
        return errors

    async def _settle_public(self, staged: Staged, landing: Landing, at_ms: int | None) -> None:
        """Profile-updates and audience changes of the staged values.

        They must be in Kafka before the changelog records of the values they publish: with the
        memory store they are appended to batches that the changelog flush sends and awaits
        first (no send and no wait per record); otherwise (a write sends its changelog record at
        once) they are sent now and land with the record's must-land sends (index -1).
        """
        if self.direct:
            self.activation.settle(staged, self.stored, self.publish, at_ms)
            return
        public: list[tuple[str, bytes, bytes | None]] = []
        self.activation.settle(staged, self.stored, lambda logical, key, value: public.append((logical, key, value)), at_ms)
        for logical, key, value in public:
            fut = await self.app.producer.send(self.settings.topic(logical), key, value, partition=None, timestamp=None, headers=None)
            landing.append((fut, -1))

    async def _land(self, landing: Landing, message: Any) -> list[tuple[int, BaseException]]:
        """Await every must-land send; returns the items whose sends Kafka refused for good.

        Any other failure raises. A public record refused for good (profiles are bounded well
        under the record limit, so this means a misconfigured topic) is counted and logged; the
        profile's next change publishes it again. Never a reason to stop the partition.
        """
        results = await asyncio.gather(*(fut for fut, _ in landing), return_exceptions=True)
        refused = [(i, r) for (_, i), r in zip(landing, results, strict=True) if isinstance(r, KafkaError) and not r.retriable]
        for r in results:
            if isinstance(r, BaseException) and not (isinstance(r, KafkaError) and not r.retriable):
                raise r
        for index, exc in refused:
            if index < 0:
                self.sends.events_failed.inc()
                log.error("profiles: a profile-update/audience record of %s/%s/%s was refused: %s",
                          message.topic, message.partition, message.offset, type(exc).__name__)
        return [(index, exc) for index, exc in refused if index >= 0]

    async def process(self, message: Any, batch: Admitted) -> None:
        """One record: decide every item, land what the writes depend on, write each key once."""
        # A key's new value is written once per record, after all its items: a crash before
        # the writes replays the whole bundle, and the positions skip what was written.
        m = self.metrics
        try:
            staged, outcomes = await self.decide_record(message)
        except Exception:
            # Not delivered: nothing is written, and the partition restarts from its commit.
            self.counted["error"].inc()
            log.exception("profiles: sends of %s/%s/%s not delivered; it will be processed again",
                          message.topic, message.partition, message.offset)
            batch.fail()
            return
        try:
            for key, (value, identifiers) in staged.items():
                await self.sends.write(key, value, message.partition)
                m.profile_bytes.observe(len(value))
                if identifiers is not None:
                    m.component_size.observe(identifiers)
        except Exception:
            outcomes["error"] += 1
            log.exception("profiles: could not write %s/%s/%s", message.topic, message.partition, message.offset)
        finally:
            for outcome, n in outcomes.items():
                self.counted[outcome].inc(n)
            trimmed = self.profile_stage.trimmed
            if trimmed:
                for part, n in trimmed.items():
                    m.profile_trimmed.labels(part).inc(n)
                trimmed.clear()

    def flush_if_due(self) -> None:
        """Kick the changelog flush when it is due: in the background (it awaits the public
        records first); the agent goes on meanwhile."""
        if time.monotonic() >= self.next_flush:
            self.next_flush = time.monotonic() + self.flush_every
            self.sends.kick()

    def count_live(self) -> None:
        """touchpoint_profiles: live profiles in the partitions this worker actively owns.

        The memory store also keeps keys of partitions this worker lost in a rebalance (live
        writes are not tracked per partition), so keys are filtered by their partition.
        """
        s = self.settings
        try:
            topic = s.topic(T.PROFILE_EVENTS)
            active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
            n = 0
            cache = self.partition_cache
            for key, value in self.table.items():
                part = cache.get(key)
                if part is None:
                    part = cache[key] = key_partition(key, s.partitions)
                if part in active and not is_tomb_bytes(value):
                    n += 1
            self.metrics.profiles.set(n)
        except Exception:
            log.exception("profiles: could not count live profiles")


def _item_bytes(key: bytes | None, record: Any) -> bytes:
    """A bundle item as a single profile-events record (what ``touchpoint send`` could replay)."""
    if isinstance(record, (bytes, bytearray)):
        return bytes(record)
    return orjson.dumps(record) if record is not None else b""


def record_time_ms(message: Any) -> int | None:
    """A Faust message's Kafka timestamp in epoch ms (Faust holds it in float seconds), or None.

    >>> class M: timestamp = 1_796_220_159.12
    >>> record_time_ms(M())
    1796220159120
    >>> M.timestamp = None; record_time_ms(M()) is None
    True
    """
    ts = getattr(message, "timestamp", None)
    return round(ts * 1000) if isinstance(ts, (int, float)) and ts > 0 else None
