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
    """Declare the ``profiles`` table and agent on ``app``; returns the table."""
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
    rules = getattr(ctx.identity, "rules", None)
    keep = (lambda f: not rules.is_blocked(parse(f))) if rules is not None else None
    profile_stage = ProfileStage(Limits(max_bytes=s.profile_max_bytes), keep_identifier=keep)
    stage: Any = profile_stage
    activation = ctx.activation  # streams/activation/wiring.py: traits, audiences, profile-updates
    if activation is not None:
        stage = activation.wrap(profile_stage)
    ctx.profiles_table = table
    m = ctx.metrics
    counted = {o: m.profile_records.labels(o) for o in (*OUTCOMES, "error")}
    seconds = m.batch_seconds.labels("profiles")
    for child in counted.values():
        child.inc(0)

    direct = s.store.startswith("memory")

    def stored(key: bytes) -> bytes | None:
        # The memory store's dict read directly: Table.get adds a sensor call and two lookups per
        # item. (table.data is only touched here, at run time: it builds the store and resolves
        # the event loop, which must not happen before the worker picks uvloop.)
        return table.data.get(key) if direct else table.get(key)

    sends = ProfileSends(app, table, s.topic(T.PROFILE_EVENTS), s.topic(T.DLQ), ctx, stored)
    ctx.sources().before_commit.append(sends.repair)

    async def send_public(logical: str, key: bytes, value: bytes | None) -> Awaitable[Any]:
        """A record on one of the activation topics (landed before the changelog of its value)."""
        return await app.producer.send(s.topic(logical), key, value, partition=None, timestamp=None, headers=None)

    async def apply(key: bytes | None, record: Any, pos: int, message: Any, staged: dict[bytes, tuple[bytes, int | None]],
                    landing: list[tuple[Awaitable[Any], int]], outcomes: dict[str, int], index: int) -> None:
        """One record (or bundle item): decide, send, stage the new value (written per record)."""
        if not key:
            outcomes["invalid"] += 1
            return
        current = staged.get(key)
        decision = stage.decide(key.decode(), current[0] if current is not None else stored(key), record, pos)
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

    async def decide_record(message: Any) -> tuple[dict[bytes, tuple[bytes, int | None]], dict[str, int]]:
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
            staged: dict[bytes, tuple[bytes, int | None]] = {}  # key -> (new value, identifiers it holds)
            landing: list[tuple[Awaitable[Any], int]] = []
            outcomes: dict[str, int] = defaultdict(int)  # counted once per record, not per item
            for index, (key, record) in enumerate(items):
                if index in skip:
                    continue
                try:
                    await apply(key, record, position(message.offset, index), message, staged, landing, outcomes, index)
                except Exception as exc:
                    if isinstance(exc, KafkaError) and exc.retriable:
                        raise
                    log.exception("profiles: could not process %s/%s/%s item %d", message.topic, message.partition, message.offset, index)
                    errors += 1
                    skip.add(index)
                    await sends.dead_letter(_item_bytes(key, record), f"item {index}: {type(exc).__name__}: {exc}", message,
                                            Reason.REFUSED_BY_BROKER if isinstance(exc, KafkaError) else Reason.PROCESSING_ERROR)
            if activation is not None and staged:
                # Profile-updates and audience changes must be in Kafka before the changelog
                # records of the values they publish: with the memory store the changelog flush
                # awaits them (sends.hold: no wait per record); otherwise (a write sends its
                # changelog record at once) they land with the record's must-land sends (index -1).
                public: list[Any] = []
                await activation.settle(staged, stored, send_public, public)
                if direct:
                    for fut in public:
                        sends.hold(fut)
                else:
                    landing.extend((fut, -1) for fut in public)
            # The writes make a replay skip this record, so the absorbs (and forwarded erasures)
            # they depend on must be in Kafka first: one wait per record, not one per merge.
            results = await asyncio.gather(*(fut for fut, _ in landing), return_exceptions=True)
            refused = [(i, r) for (_, i), r in zip(landing, results, strict=True) if isinstance(r, KafkaError) and not r.retriable]
            for r in results:
                if isinstance(r, BaseException) and not (isinstance(r, KafkaError) and not r.retriable):
                    raise r
            if not refused:
                outcomes["error"] += errors
                return staged, outcomes
            public_refused = [exc for index, exc in refused if index < 0]
            refused = [(index, exc) for index, exc in refused if index >= 0]
            for exc in public_refused:
                # A public record refused for good (profiles are bounded well under the record
                # limit, so this means a misconfigured topic): counted and logged; the profile's
                # next change publishes it again. Never a reason to stop the partition.
                sends.events_failed.inc()
                log.error("profiles: a profile-update/audience record of %s/%s/%s was refused: %s",
                          message.topic, message.partition, message.offset, type(exc).__name__)
            if not refused:
                outcomes["error"] += errors
                return staged, outcomes
            for index, exc in refused:
                sends.events_failed.inc()
                errors += 1
                skip.add(index)
                key, record = items[index]
                await sends.dead_letter(_item_bytes(key, record), f"item {index}: a record it sends was refused: {type(exc).__name__}",
                                        message)

    flush_every = s.batch_within_s
    next_flush = [0.0]

    def flush_changelog() -> None:
        """In the background (it awaits the public records first): the agent goes on meanwhile."""
        next_flush[0] = time.monotonic() + flush_every
        sends.kick()

    @app.agent(source, name="profiles", concurrency=1)
    async def profiles(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            async with ordered.admitted([message]) as batch:
                if not batch.keep:  # a re-delivery, or a gap being rewound over
                    continue
                await process(message, batch)
                seconds.observe(time.perf_counter() - started)
            if time.monotonic() >= next_flush[0]:
                flush_changelog()

    @app.timer(flush_every)
    async def _flush_idle() -> None:
        """Changelog records of the last changes go out even when no record follows them."""
        if time.monotonic() >= next_flush[0]:
            flush_changelog()

    async def process(message: Any, batch: Admitted) -> None:
        """One record: decide every item, land what the writes depend on, write each key once."""
        # A key's new value is written once per record, after all its items: a crash before
        # the writes replays the whole bundle, and the positions skip what was written.
        try:
            staged, outcomes = await decide_record(message)
        except Exception:
            # Not delivered: nothing is written, and the partition restarts from its commit.
            counted["error"].inc()
            log.exception("profiles: sends of %s/%s/%s not delivered; it will be processed again",
                          message.topic, message.partition, message.offset)
            batch.fail()
            return
        try:
            for key, (value, identifiers) in staged.items():
                await sends.write(key, value, message.partition)
                m.profile_bytes.observe(len(value))
                if identifiers is not None:
                    m.component_size.observe(identifiers)
        except Exception:
            outcomes["error"] += 1
            log.exception("profiles: could not write %s/%s/%s", message.topic, message.partition, message.offset)
        finally:
            for outcome, n in outcomes.items():
                counted[outcome].inc(n)
            if profile_stage.trimmed:
                for part, n in profile_stage.trimmed.items():
                    m.profile_trimmed.labels(part).inc(n)
                profile_stage.trimmed.clear()

    partition_cache: dict[bytes, int] = {}

    @app.timer(GAUGE_EVERY_S)
    async def count_live() -> None:
        """touchpoint_profiles: live profiles in the partitions this worker actively owns.

        The memory store also keeps keys of partitions this worker lost in a rebalance (live
        writes are not tracked per partition), so keys are filtered by their partition.
        """
        try:
            topic = s.topic(T.PROFILE_EVENTS)
            active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
            n = 0
            for key, value in table.items():
                part = partition_cache.get(key)
                if part is None:
                    part = partition_cache[key] = key_partition(key, s.partitions)
                if part in active and not is_tomb_bytes(value):
                    n += 1
            m.profiles.set(n)
        except Exception:
            log.exception("profiles: could not count live profiles")

    return table


def _item_bytes(key: bytes | None, record: Any) -> bytes:
    """A bundle item as a single profile-events record (what ``touchpoint send`` could replay)."""
    if isinstance(record, (bytes, bytearray)):
        return bytes(record)
    return orjson.dumps(record) if record is not None else b""
