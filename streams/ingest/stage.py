"""The ingest stage: one batch of raw records in, applied events and dead letters out.

Kept free of Faust so it can be driven by a plain list of records in tests; the agent in
``agent.py`` only feeds it batches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

from collections import defaultdict

import orjson

from streams.demand.dimensions import DIMENSIONS, partial_counts
from streams.events.model import Touchpoint, format_identifier
from streams.events.reasons import Reason, Rejected
from streams.ingest.decode import decode
from streams.ingest.dedup import RedisDedup
from streams.ingest.dlq import DeadLetter, DlqCodec
from streams.ingest.normalize import Normalizer
from streams.observability.metrics import Metrics
from streams.resilience import retry_until_ok

__all__ = ["IngestStage", "RawRecord", "Sink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record as the consumer saw it."""

    value: bytes | None
    topic: str
    partition: int
    offset: int

    @property
    def claim(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class Sink(Protocol):
    """Where the stage writes; the agent binds it to Faust topics."""

    async def applied(self, key: bytes, value: bytes) -> None: ...
    async def dead_letter(self, letter: DeadLetter) -> None: ...
    async def demand(self, key: bytes, value: bytes) -> None: ...


class IngestStage:
    def __init__(self, *, max_event_bytes: int, normalizer: Normalizer, dedup: RedisDedup,
                 codec: DlqCodec, sink: Sink, metrics: Metrics,
                 demand_bucket_s: int = 300, demand_dimensions: tuple[str, ...] = DIMENSIONS,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.max_event_bytes = max_event_bytes
        self.normalizer = normalizer
        self.dedup = dedup
        self.codec = codec
        self.sink = sink
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.demand_bucket_s = demand_bucket_s
        self.demand_dimensions = demand_dimensions

    def prepare(self, record: RawRecord, now_ms: int) -> Touchpoint | Rejected:
        """Decode, validate and normalise one record (pure)."""
        event = decode(record.value, self.max_event_bytes)
        if isinstance(event, Rejected):
            return event
        return self.normalizer.normalize(event, now_ms)

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
        for i, touchpoint in accepted:
            touchpoint.source = records[i].claim
        fresh = await retry_until_ok(
            lambda: self.dedup.first_seen([(t.message_id, t.source or "") for _, t in accepted]),
            "redis", self.metrics.dependency_retries.labels("redis"))
        verdict = dict(zip((i for i, _ in accepted), fresh))

        applied_by_partition: dict[int, list[Touchpoint]] = defaultdict(list)
        last_offset: dict[int, int] = {}
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Rejected):
                await self._dead_letter(records[i], outcome, now_ms)
            elif verdict[i]:
                try:
                    key = (outcome.profile_id or format_identifier(outcome.identifiers[0])).encode()
                    await self.sink.applied(key, outcome.to_bytes())
                except Exception as exc:
                    log.exception("could not emit %s", records[i].claim)
                    await self._dead_letter(records[i], Rejected(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:300], "emit"), now_ms)
                    continue
                self.metrics.applied.inc()
                applied_by_partition[records[i].partition].append(outcome)
                last_offset[records[i].partition] = records[i].offset
                self.metrics.event_lag.observe(max(0.0, (now_ms - outcome.ts_ms) / 1000))
            else:
                self.metrics.duplicates.inc()
        await self._emit_demand(applied_by_partition, last_offset)
        self.metrics.ingest_batch_seconds.observe(time.perf_counter() - started)

    async def _emit_demand(self, applied: dict[int, list[Touchpoint]], last_offset: dict[int, int]) -> None:
        """Partial demand counts of this batch, per key, bucket and source partition.

        Each carries the last source offset it covers, so the demand stage can skip a batch that
        a restarted worker re-sends after a crash before its offsets were committed.
        """
        for partition, touchpoints in applied.items():
            for (key, bucket_ms), count in partial_counts(touchpoints, self.demand_bucket_s, self.demand_dimensions).items():
                value = orjson.dumps({"k": key, "b": bucket_ms, "n": count, "p": partition, "o": last_offset[partition]})
                await self.sink.demand(key.encode(), value)

    async def _dead_letter(self, record: RawRecord, rejected: Rejected, now_ms: int) -> None:
        letter = self.codec.dead_letter(record.value, rejected, record.topic, record.partition, record.offset, now_ms)
        await self.sink.dead_letter(letter)
        self.metrics.dead_lettered.inc()
        self.metrics.dead_by_reason[rejected.reason].inc()
