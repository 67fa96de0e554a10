"""The demand agent: a thin loop feeding demand-counts records, in order per partition, to :class:`DemandStage`."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import faust
import orjson

from streams.demand.dimensions import parse_dimensions
from streams.demand.gcpolicy import CloseGc
from streams.demand.open_alerts import SharedOpenAlerts
from streams.demand.stage import CLOCK_TABLE, STATE_TABLE, CloseInterrupted, DemandStage, StageConfig
from streams.demand.writes import CoalescedWrites
from streams.kafka import topics as T
from streams.kafka.batches import BatchProducer
from streams.kafka.channelbatches import by_partition, next_batch
from streams.kafka.delivery import aiokafka_producer

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Declare the demand agent and its tables on ``app``; ``ctx`` is the worker's WorkerContext."""
    s = ctx.settings
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    source, ordered = ctx.sources().topic(s.topic(T.DEMAND_COUNTS), "demand", **raw)
    alerts = app.topic(s.topic(T.ALERTS), **raw)
    # Both tables are co-partitioned with demand-counts: Faust writes a table's changelog to the
    # partition of the event being processed, and every key of a partition is written only while
    # processing an event of that same partition.
    table_opts = dict(key_type=str, partitions=s.partitions)  # json keys and values (Faust default)
    state = app.Table(STATE_TABLE, help="demand detector state per dimension key", **table_opts)
    clocks = app.Table(CLOCK_TABLE, help="event-time clock per demand-counts partition", **table_opts)
    stage = DemandStage(StageConfig.from_settings(s, worker=f"{socket.gethostname()}:{os.getpid()}"), state, clocks, ctx.metrics)
    # One changelog record per key per commit instead of one per write (writes.py); sent and
    # checked before the commit of the offsets whose records wrote them.
    failed = ctx.metrics.send_failures.labels("changelog")
    demand_topic = s.topic(T.DEMAND_COUNTS)
    writes = CoalescedWrites(
        {STATE_TABLE: state, CLOCK_TABLE: clocks},
        BatchProducer(lambda: aiokafka_producer(app), s.partitions, s.max_record_bytes, failed),
        flush=lambda: app.producer.flush(),
        assigned=lambda: {tp.partition for tp in app.consumer.assignment() if tp.topic == demand_topic},
        direct=s.store.startswith("memory"), slice_s=stage.config.close_slice_s, failed=failed)
    stage.write = writes.set
    ctx.sources().before_commit.append(writes.before_commit)
    forwarder = None
    if s.alertmanager_url:
        from streams.demand.alerting import AlertmanagerForwarder

        forwarder = AlertmanagerForwarder(s.alertmanager_url, ctx.metrics)
    ctx.demand = stage
    # Corroboration across workers (corroboration.py): every worker's published open alerts in one
    # Redis hash, read before each run of records (at most once a second), written after commit.
    shared = None
    if "category" in parse_dimensions(s.demand_dimensions):
        shared = SharedOpenAlerts(ctx.redis, s.namespace, stage.config.alert_horizon_ms,
                                  on_error=ctx.metrics.demand_shared_errors)
    # The one place the worker's GC is tuned: a full pass walks every series' monitor and
    # snapshot (~300 ms with 2,000 series, one or two per bucket close); frozen between the slices
    # of a close and after it, unfrozen once a day for cyclic garbage (gcpolicy.py: measurements).
    close_gc = CloseGc()
    stage.on_slice = close_gc.after_slice
    seconds = ctx.metrics.batch_seconds.labels("demand")

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types receivers as sync or Awaitable
    async def _forget_index(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # Keys and open alerts of a partition are rebuilt from the recovered table on first use.
        stage.forget()

    async def process_run(run: list[Any]) -> list[dict[str, Any]]:
        """One partition's records of a batch, in order, through the in-order guard; returns the
        alerts raised. A close cut by a rebalance fails the run: the partition restarts from its commit."""
        started = time.perf_counter()
        raised: list[dict[str, Any]] = []
        if shared is not None:
            stage.elsewhere = await shared.refresh(stage.event_now_ms())
        async with ordered.admitted(run) as batch:
            for i in batch.keep:
                message = run[i]
                try:
                    # A bucket close runs in slices that hand the loop back (stage.process_sliced):
                    # nothing is written until commit, so a crash mid-close redoes it from the commit.
                    outcome = await stage.process_sliced(message.partition, message.value)
                    for alert in outcome.alerts:
                        await alerts.send(key=alert["key"].encode(), value=orjson.dumps(alert))
                    stage.commit(outcome)
                    if shared is not None and outcome.alerts:
                        await shared.record(outcome.alerts)
                    if outcome.closed_buckets:
                        close_gc.after_close()
                    raised.extend(outcome.alerts)
                except CloseInterrupted as exc:  # a rebalance during the close: redo it from the commit
                    log.warning("demand: %s", exc)
                    batch.fail()
                    break
                except Exception:  # never let one bad record kill the agent (Faust would ack it anyway)
                    ctx.metrics.demand_errors.inc()
                    log.exception("demand: could not process %s/%s/%s", message.topic, message.partition, message.offset)
                    # counted and completed: a bad record is not retried for ever
        seconds.observe(time.perf_counter() - started)
        return raised

    # concurrency=1: Faust can commit past an in-flight event with concurrency > 1 (DESIGN.md, Faust
    # traps). The records queued for the agent are taken in batches straight from its channel
    # (streams/kafka/channelbatches.py: no per-record Stream machinery), one partition's run at a
    # time, each record processed and committed to the stage in order as before.
    @app.agent(source, name="demand", concurrency=1)
    async def demand(stream: faust.StreamT) -> None:
        channel = stream.channel
        while True:
            messages = await next_batch(channel, s.batch_size)
            if not messages:  # the channel ended: the worker is stopping
                return
            assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == demand_topic}
            for partition, run in by_partition(messages).items():
                if partition not in assigned:  # revoked while queued: the new owner processes them from the commit
                    continue
                raised = await process_run(run)
                if forwarder is not None and raised:
                    await forwarder.forward(raised)

    if forwarder is not None:
        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _close_forwarder(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            await forwarder.close()
