"""The ingest stage: one batch of raw records in, applied events and dead letters out.

Kept free of Faust so it can be driven by a plain list of records in tests; the agent in
``agent.py`` only feeds it batches.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from streams.backoff import BASIC_TRANSIENT, retry_until_ok
from streams.demand.dimensions import DIMENSIONS, MEASURES
from streams.demand.pending import PendingCounts
from streams.events.model import Touchpoint, dedup_id
from streams.events.reasons import Reason, Rejected
from streams.identity.memory_graph import REFUSAL_TYPES
from streams.identity.model import Resolution, ResolveRequest, refusal_reason
from streams.identity.rights import Readmitter, grants_consent, readmission_digests, readmitted_record
from streams.ingest.decode import decode
from streams.ingest.dlq import DeadLetter, DlqCodec
from streams.ingest.eventtime import EventTimeWindow
from streams.ingest.normalize import Normalizer
from streams.profiles.bundle import encode_bundles, key_partition

if TYPE_CHECKING:  # passed in by the wiring; importing it would load prometheus_client (docs/architecture.md)
    from streams.observability.metrics import Metrics

__all__ = ["IngestStage", "RawRecord", "Sink"]

log = logging.getLogger(__name__)

MAX_PENDING_DEMAND = 20_000  # (key, bucket) pairs held before the next commit sends them anyway


@dataclass(frozen=True, slots=True)
class Emit:
    """One profile-events item of a batch, and the input record it comes from."""

    key: bytes
    value: bytes
    record: RawRecord
    touchpoint: Touchpoint


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record as the consumer saw it."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None  # Kafka record timestamp (set when the record was produced)

    @property
    def claim(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class Sink(Protocol):
    """Where the stage writes; the agent binds it to the worker's producer (``ProducerSink``)."""

    async def applied(self, key: bytes, value: bytes, partition: int | None = None) -> None: ...
    async def dead_letter(self, letter: DeadLetter) -> None: ...
    async def demand(self, key: bytes, value: bytes) -> None: ...
    async def identity_change(self, key: bytes, value: bytes) -> None: ...


class Resolver(Protocol):
    """Dedup + identity resolution of a whole batch in one round trip (RedisIdentityGraph)."""

    async def resolve_batch(self, requests: Sequence[ResolveRequest]) -> list[Resolution]: ...


class Sealer(Protocol):
    """Seals the identifiers of audit records (streams/identity/sealing.py: AuditSealer)."""

    async def seal(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


class IngestStage:
    def __init__(self, *, max_event_bytes: int, normalizer: Normalizer, resolver: Resolver,
                 codec: DlqCodec, sink: Sink, metrics: Metrics, sealer: Sealer | None = None,
                 readmitter: Readmitter | None = None,
                 demand_bucket_s: int = 300, demand_dimensions: tuple[str, ...] = DIMENSIONS, profile_partitions: int = 1,
                 demand_measures: tuple[str, ...] = MEASURES, demand_currency: str = "CNY",
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 window: EventTimeWindow | None = None,
                 transient: tuple[type[BaseException], ...] = BASIC_TRANSIENT) -> None:
        self.max_event_bytes = max_event_bytes
        # Errors of the resolver and the sink that mean "unavailable": waited out, never dead-lettered
        # (the wiring passes the client libraries' ones, streams/resilience.py).
        self.transient = transient
        self.normalizer = normalizer
        self.resolver = resolver
        # identity.changes is kept forever: identifiers go there sealed under per-identifier data
        # keys that an erasure shreds (None = written in clear, for tests of other concerns)
        self.sealer = sealer
        # the way back of an erased person: consented events readmit their identifiers (rights.py)
        self.readmitter = readmitter
        self.codec = codec
        self.sink = sink
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.window = window  # the event-time window (streams/ingest/eventtime.py); None = unchecked
        self.demand_bucket_s = demand_bucket_s
        self.demand_dimensions = demand_dimensions
        self.profile_partitions = profile_partitions  # of profile-events: events are bundled per partition
        # Summed across batches and sent by flush_demand(), which the worker calls before each
        # commit of input offsets (so committed events' counts are always in Kafka).
        self.pending_demand = PendingCounts(demand_dimensions, demand_measures, demand_currency)

    def prepare(self, record: RawRecord, now_ms: int) -> Touchpoint | Rejected:
        """Decode, validate and normalise one record (pure).

        ``receivedAt`` is the record's Kafka timestamp when it has one: the moment the collector
        (or any producer) handed it to Kafka. It does not drift while the worker lags behind, and
        a replay after a crash gives every event the same event time again.
        """
        event = decode(record.value, self.max_event_bytes)
        if isinstance(event, Rejected):
            return event
        received_ms = record.timestamp_ms if record.timestamp_ms and record.timestamp_ms <= now_ms else now_ms
        touchpoint = self.normalizer.normalize(event, received_ms)
        if isinstance(touchpoint, Touchpoint):
            touchpoint.scope = event.get("sourceId")  # dedup is per source (schema: a short token)
            if self.window is not None:
                return self.window.apply(touchpoint)
        return touchpoint

    async def process_batch(self, records: Sequence[RawRecord]) -> None:
        started = time.perf_counter()
        now_ms = self.clock_ms()
        # Each input record gets exactly one outcome: applied, duplicate or dead-lettered (invariant 1).
        outcomes: list[Touchpoint | Rejected] = []
        for record in records:
            try:
                outcomes.append(self.prepare(record, now_ms))
            except Exception as exc:  # an unexpected bug must not lose or skip the record
                log.exception("processing error at %s", record.claim)
                outcomes.append(Rejected(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:300]))
        accepted = [(i, t) for i, t in enumerate(outcomes) if isinstance(t, Touchpoint)]
        requests = []
        for i, touchpoint in accepted:
            touchpoint.source = records[i].claim
            requests.append(ResolveRequest(dedup_id(touchpoint.message_id, touchpoint.scope), touchpoint.source,
                                           touchpoint.identifiers, touchpoint.ts_ms))
        audit: list[tuple[bytes, dict[str, Any]]] = []  # identity.changes records, sealed and sent together below
        if self.readmitter is not None:
            await self._readmit([t for _, t in accepted], audit)
        resolutions = await retry_until_ok(lambda: self.resolver.resolve_batch(requests), "redis",
                                           self.metrics.dependency_retries.labels("redis"), transient=self.transient)
        verdict = {i: r for (i, _), r in zip(accepted, resolutions, strict=True)}

        applied_by_partition: dict[int, list[Touchpoint]] = defaultdict(list)
        emits: dict[int, list[Emit]] = defaultdict(list)  # profile-events partition -> items in batch order
        last_offset: dict[int, int] = {}
        duplicates = erased = 0  # counted per batch: one metric update per batch, not per event
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Rejected):
                await self._dead_letter(records[i], outcome, now_ms)
                continue
            resolution = verdict[i]
            if resolution.outcome == "duplicate":
                duplicates += 1
                continue
            if resolution.outcome == "erased":  # a suppressed person: dropped, never stored (invariant 5)
                erased += 1
                continue
            self._audit(resolution, outcome.message_id, audit)
            if resolution.outcome == "blocked" or resolution.profile_id is None:
                kinds = ", ".join(sorted({kind for kind, _ in outcome.identifiers}))
                await self._dead_letter(records[i], Rejected(Reason.NO_IDENTIFIER, f"every identifier is a blocked value ({kinds})", "identity"), now_ms)
                continue
            try:
                self._stage_emit(outcome, resolution, records[i], emits)
            except Exception as exc:
                log.exception("could not emit %s", records[i].claim)
                await self._dead_letter(records[i], Rejected(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:300], "emit"), now_ms)
                continue
            applied_by_partition[records[i].partition].append(outcome)
            last_offset[records[i].partition] = records[i].offset
            self.metrics.event_lag.observe(max(0.0, (now_ms - outcome.ts_ms) / 1000))
        await self._send_all(self.sink.identity_change, await self._sealed(audit))
        for failed in await self._send_bundles(emits):
            # A bundle the broker refused for good (not unavailability: that is waited out): its
            # events were sent one by one, and these could not be sent at all.
            record, touchpoint = failed
            applied_by_partition[record.partition].remove(touchpoint)
            await self._dead_letter(record, Rejected(Reason.PROCESSING_ERROR, "profile-events refused the event", "emit"), now_ms)
        self.metrics.applied.inc(sum(len(t) for t in applied_by_partition.values()))
        self.metrics.duplicates.inc(duplicates)
        self.metrics.erased.inc(erased)
        self._emit_demand(applied_by_partition, last_offset)
        if len(self.pending_demand) >= MAX_PENDING_DEMAND:  # bounded memory between commits
            await self.flush_demand()
        self.metrics.ingest_batch_seconds.observe(time.perf_counter() - started)

    async def _send(self, call: Callable[[], Awaitable[None]]) -> None:
        """One send to Kafka; an unavailable broker is waited out (never a dead letter, never an
        exception out of the batch, which would make Faust ack the batch unprocessed)."""
        await retry_until_ok(call, "kafka", self.metrics.dependency_retries.labels("kafka"), transient=self.transient)

    async def _send_all(self, send: Callable[[bytes, bytes], Awaitable[None]], records: Sequence[tuple[bytes, bytes]]) -> None:
        """Send records in order; an unavailable broker is waited out and the sending resumes at
        the record that failed (one retry loop per batch instead of one per record)."""
        sent = 0

        async def rest() -> None:
            nonlocal sent
            while sent < len(records):
                await send(*records[sent])
                sent += 1

        if records:
            await self._send(rest)

    async def _readmit(self, touchpoints: list[Touchpoint], audit: list[tuple[bytes, dict[str, Any]]]) -> None:
        """Before resolving: events with fresh consent readmit their erased identifiers (rights.py)."""
        consented = [t for t in touchpoints if grants_consent(t.consent)]
        if not consented or self.readmitter is None:
            return
        items = [(readmission_digests(t.identifiers), t.ts_ms) for t in consented]
        readmitter = self.readmitter
        done = await retry_until_ok(lambda: readmitter.readmit(items), "redis",
                                    self.metrics.dependency_retries.labels("redis"), transient=self.transient)
        for t, digests in zip(consented, done, strict=True):
            if digests:
                audit.append((b"readmission", readmitted_record(t.message_id, digests, t.ts_ms)))
                self.metrics.identity_change_by_type["readmitted"].inc()

    async def _sealed(self, audit: list[tuple[bytes, dict[str, Any]]]) -> list[tuple[bytes, bytes]]:
        """The audit records as sent: identifiers sealed (new data keys published first)."""
        records = [change for _, change in audit]
        if self.sealer is not None and records:
            sealer = self.sealer
            records = await retry_until_ok(lambda: sealer.seal(records), "redis",
                                           self.metrics.dependency_retries.labels("redis"), transient=self.transient)
        return [(key, orjson.dumps(change)) for (key, _), change in zip(audit, records, strict=True)]

    def _audit(self, resolution: Resolution, message_id: str, audit: list[tuple[bytes, dict[str, Any]]]) -> None:
        """The identity audit trail (identity.changes), keyed by profile id (or message id when blocked)."""
        key = (resolution.profile_id or message_id).encode()
        for change in resolution.changes:
            audit.append((key, change))
            counter = self.metrics.identity_change_by_type.get(change.get("type", ""))
            if counter is not None:
                counter.inc()
            if change.get("type") in REFUSAL_TYPES:
                self.metrics.identity_refused.labels(refusal_reason(change.get("rule", ""))).inc()

    def _stage_emit(self, touchpoint: Touchpoint, resolution: Resolution, record: RawRecord, emits: dict[int, list[Emit]]) -> None:
        """Merge instructions, then the event itself, keyed by profile, into this batch's bundles.

        A merge instruction goes to the loser's partition before the event, so the profiles stage
        folds the loser into the survivor and forwards anything still in flight for it.
        """
        pid = resolution.profile_id
        assert pid is not None
        touchpoint.profile_id = pid
        if resolution.refused:  # the profile holds the identifiers the graph linked to it, no others
            refused = set(resolution.refused)
            touchpoint.identifiers = tuple(i for i in touchpoint.identifiers if f"{i[0]}:{i[1]}" not in refused)
        for loser in resolution.merged:
            control = {"control": "merge", "from": loser, "into": pid, "message_id": touchpoint.message_id, "ts_ms": touchpoint.ts_ms}
            key = loser.encode()
            emits[key_partition(key, self.profile_partitions)].append(Emit(key, orjson.dumps(control), record, touchpoint))
        if resolution.merged:
            self.metrics.identity_merges.inc(len(resolution.merged))
        key = pid.encode()
        emits[key_partition(key, self.profile_partitions)].append(Emit(key, touchpoint.to_bytes(), record, touchpoint))

    async def _send_bundles(self, emits: dict[int, list[Emit]]) -> list[tuple[RawRecord, Touchpoint]]:
        """One profile-events record per partition (split when large, streams/profiles/bundle.py).
        Returns the events that could not be sent at all."""
        failed: list[tuple[RawRecord, Touchpoint]] = []
        for partition, items in emits.items():
            try:
                for key, value in encode_bundles([(e.key, e.value) for e in items]):
                    await self._send(partial(self.sink.applied, key, value, partition))
            except Exception:
                log.exception("profile-events refused a bundle of %d records; sending them one by one", len(items))
                for e in items:
                    if failed and failed[-1][1] is e.touchpoint:
                        continue  # its merge instruction failed already
                    try:
                        await self._send(partial(self.sink.applied, e.key, e.value, partition))
                    except Exception:
                        log.exception("could not emit %s", e.record.claim)
                        failed.append((e.record, e.touchpoint))
        return failed

    def _emit_demand(self, applied: dict[int, list[Touchpoint]], last_offset: dict[int, int]) -> None:
        """Add this batch's applied events to the pending demand counts (sent by :meth:`flush_demand`)."""
        for partition, touchpoints in applied.items():
            self.pending_demand.add(partition, last_offset[partition], touchpoints, self.demand_bucket_s)
        for reason, n in self.pending_demand.skipped.items():  # repeated order ids, other currencies
            self.metrics.demand_uncounted.labels(reason).inc(n)
        self.pending_demand.skipped.clear()

    async def flush_demand(self) -> int:
        """Send the pending demand counts; returns how many records left. Called before every
        commit of input offsets. Counts that could not be sent stay pending."""
        pending = self.pending_demand.take()
        if not pending:
            return 0
        try:
            records = pending.records()  # inside: a record that cannot be built must not drop the rest
            await self._send_all(self.sink.demand, records)
        except BaseException:
            # Re-sending some of them later is the at-least-once case the demand stage skips by offset.
            self.pending_demand.merge(pending)
            raise
        return len(records)

    async def _dead_letter(self, record: RawRecord, rejected: Rejected, now_ms: int) -> None:
        letter = self.codec.dead_letter(record.value, rejected, record.topic, record.partition, record.offset, now_ms)
        await self._send(partial(self.sink.dead_letter, letter))
        self.metrics.dead_lettered.inc()
        self.metrics.dead_by_reason[rejected.reason].inc()
