"""The on-call view: a bounded in-memory feed of alerts, identity changes and rates, served at /oncall.

Where the data comes from (and why): every worker runs one group-less consumer of its own that
reads the *whole* ``alerts`` and ``identity.changes`` topics from a recent offset onwards (the
last :data:`ALERT_BACKLOG` / :data:`CHANGE_BACKLOG` records of each partition at start-up, then
live). So whichever worker an engineer opens shows every alert and every merge, not only those
of the partitions it happens to own, and a restarted worker shows the recent past at once.
Memory is bounded by fixed-size rings; nothing is written anywhere. Rates come from the end
offsets of the input and dead-letter topics (fleet-wide) and from this worker's own counters.

The page itself (``/oncall``, static HTML/JS/CSS) carries no data and is served without the
bearer token, so a browser can load it; its data endpoint ``/oncall/data`` is guarded like every
other endpoint, the page sends the token it finds in the URL fragment (``#token=...``), which
browsers never send to the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.backoff import delays
from streams.identity.sealing import PREFIX, is_sealed
from streams.kafka import topics as T
from streams.kafka.client import admin_client, reader
from streams.kafka.reading import partitions_of
from streams.observability.metrics import Metrics
from streams.settings import Settings

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["OncallFeed", "OncallReader", "register", "local_counters"]

log = logging.getLogger(__name__)

ALERT_BACKLOG = 500      # records per alerts partition re-read at start-up
CHANGE_BACKLOG = 5000    # records per identity.changes partition re-read at start-up
SAMPLE_INTERVAL_S = 5.0
OPEN_STATES = ("OPEN", "ESCALATE")
SHOWN_CHANGES = (b'"merged"', b'"quarantined"')  # cheap pre-filter before parsing a change record
_MAX_IDENT = 48  # identifiers are shown shortened; email/phone values are keyed hashes anyway


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _shown(ident: str) -> str:
    if is_sealed(ident):
        return ident.partition(":")[0] + ":[sealed]" if not ident.startswith(PREFIX) else "[sealed]"
    return ident[:_MAX_IDENT]


@dataclass
class OncallFeed:
    """What the on-call page shows, in bounded rings; pure (no I/O), fed by :class:`OncallReader`."""

    max_alerts: int = 200
    max_points: int = 96
    max_changes: int = 200
    max_samples: int = 180  # 15 min at one sample per 5 s
    alerts: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    changes: deque = field(default_factory=deque)
    samples: deque = field(default_factory=deque)
    change_counts: dict[str, int] = field(default_factory=dict)
    alert_records: int = 0

    def add_alert(self, rec: dict[str, Any]) -> bool:
        """Fold one alert record (schema touchpoint.alert.v1) in; False if seen before or unusable."""
        alert_id, state, bucket = rec.get("alert_id"), rec.get("state"), rec.get("bucket_start")
        if not isinstance(alert_id, str) or not isinstance(state, str) or not isinstance(bucket, str):
            return False
        entry = self.alerts.get(alert_id)
        if entry is None:
            entry = {"alert_id": alert_id, "key": str(rec.get("key", "")), "dimension": str(rec.get("dimension", "")),
                     "value": str(rec.get("value", "")), "direction": str(rec.get("direction", "")),
                     "opened_at": rec.get("opened_at"), "points": []}
            self.alerts[alert_id] = entry
        points: list[dict[str, Any]] = entry["points"]
        # Delivery is at-least-once: (alert_id, state, bucket_start) identifies a record.
        if any(p["state"] == state and p["bucket_start"] == bucket for p in points):
            return False
        points.append({"bucket_start": bucket, "bucket_end": rec.get("bucket_end"), "state": state,
                       "observed": _num(rec.get("observed")), "expected": _num(rec.get("expected"))})
        points.sort(key=lambda p: p["bucket_start"])
        del points[:-self.max_points]
        last = points[-1]
        closed = any(p["state"] not in OPEN_STATES for p in points)
        entry.update(state=next((p["state"] for p in reversed(points) if p["state"] not in OPEN_STATES), last["state"]),
                     open=not closed, severity=max(int(rec.get("severity") or 0), int(entry.get("severity") or 0)),
                     observed=last["observed"], expected=last["expected"], last_bucket=last["bucket_start"],
                     buckets_open=rec.get("buckets_open"), excess=_num(rec.get("excess")), seen_at=time.time())
        self.alerts.move_to_end(alert_id)
        self.alert_records += 1
        self._evict_alerts()
        return True

    def _evict_alerts(self) -> None:
        while len(self.alerts) > self.max_alerts:
            # Closed alerts go first; an open alert is dropped only when everything kept is open.
            victim = next((k for k, a in self.alerts.items() if not a["open"]), None)
            self.alerts.pop(victim if victim is not None else next(iter(self.alerts)))

    def add_change(self, rec: dict[str, Any]) -> None:
        """Keep a merge or quarantine audit record (identity.changes); count every type seen."""
        kind = str(rec.get("type", ""))
        self.change_counts[kind] = self.change_counts.get(kind, 0) + 1
        if kind not in ("merged", "quarantined"):
            return
        idents = rec.get("identifiers") or []
        self.changes.append({
            "type": kind, "rule": str(rec.get("rule", "")), "ts_ms": rec.get("ts_ms"),
            "profile_id": rec.get("profile_id"), "from_profile_id": rec.get("from_profile_id"),
            # sealed under data keys (streams/identity/sealing.py): the page shows the type only
            "identifiers": [_shown(str(i)) for i in idents[:4]] if isinstance(idents, list) else [],
        })
        while len(self.changes) > self.max_changes:
            self.changes.popleft()

    def add_sample(self, t: float, values: dict[str, float]) -> None:
        """One sample of cumulative counts (end offsets, local counters) at wall time ``t``."""
        self.samples.append((t, dict(values)))
        while len(self.samples) > self.max_samples:
            self.samples.popleft()

    def rates(self) -> list[dict[str, float]]:
        """Per-second rates between consecutive samples (a counter that went back counts as a reset)."""
        out: list[dict[str, float]] = []
        pairs = list(self.samples)
        for (t0, a), (t1, b) in zip(pairs, pairs[1:], strict=False):
            dt = t1 - t0
            if dt <= 0:
                continue
            row = {"t": t1}
            for name, value in b.items():
                before = a.get(name)
                if before is not None:
                    row[name] = max(0.0, value - before) / dt if value >= before else value / dt
            out.append(row)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The JSON body of ``/oncall/data``."""
        alerts = list(self.alerts.values())
        open_ = [a for a in alerts if a["open"]]
        open_.sort(key=lambda a: (-(a.get("severity") or 0), a["key"]))
        closed = [a for a in reversed(alerts) if not a["open"]][:20]
        return {
            "alerts_open": open_,
            "alerts_closed": closed,
            "changes": list(reversed(self.changes))[:50],
            "change_counts": dict(self.change_counts),
            "rates": self.rates(),
            "alert_records": self.alert_records,
        }


def local_counters(metrics: Metrics) -> dict[str, float]:
    """This worker's cumulative event outcomes and merges, read through the public collect() API."""
    out: dict[str, float] = {}
    for family in metrics.events.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out["local_" + sample.labels["outcome"]] = sample.value
    for family in metrics.identity_merges.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out["local_merges"] = sample.value
    return out


class OncallReader:
    """Feeds an :class:`OncallFeed` from the alerts and identity.changes topics and samples rates."""

    def __init__(self, settings: Settings, feed: OncallFeed, counters: Callable[[], dict[str, float]] | None = None,
                 sample_interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.settings = settings
        self.feed = feed
        self.counters = counters or dict
        self.sample_interval_s = sample_interval_s
        self.alerts_topic = settings.topic(T.ALERTS)
        self.changes_topic = settings.topic(T.IDENTITY_CHANGES)
        self.caught_up = False
        self.started_at = time.time()
        self.errors = 0

    async def run(self) -> None:
        """Read until cancelled; reconnect after a broker error (bounded back-off)."""
        waits = delays(1.0, 30.0)
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                delay = next(waits)
                log.warning("on-call feed: %s; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        admin = admin_client(self.settings)
        await admin.start()
        try:
            feed_tps = await partitions_of(admin, [self.alerts_topic, self.changes_topic])
            rate_topics = {self.settings.topic(T.INPUT): "in", self.settings.topic(T.DLQ): "dlq"}
            rate_tps = await partitions_of(admin, list(rate_topics))
        finally:
            await admin.close()
        consumer = reader(self.settings, auto_offset_reset="earliest")
        await consumer.start()
        try:
            await self._seek_recent(consumer, feed_tps)
            next_sample = 0.0
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    self._take(tp.topic, (r.value for r in records))
                if not batches:
                    self.caught_up = True
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + self.sample_interval_s
                    ends = await consumer.end_offsets(rate_tps) if rate_tps else {}
                    values = {name: 0.0 for name in rate_topics.values()}
                    for tp, end in ends.items():
                        values[rate_topics[tp.topic]] += end
                    values.update(self.counters())
                    self.feed.add_sample(time.time(), values)
        finally:
            await consumer.stop()

    async def _seek_recent(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            backlog = ALERT_BACKLOG if tp.topic == self.alerts_topic else CHANGE_BACKLOG
            consumer.seek(tp, max(begins[tp], ends[tp] - backlog))

    def _take(self, topic: str, values: Iterable[bytes | None]) -> None:
        alerts = topic == self.alerts_topic
        for value in values:
            if not value:
                continue
            if not alerts and not any(marker in value for marker in SHOWN_CHANGES):
                continue
            try:
                rec = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            if alerts:
                self.feed.add_alert(rec)
            else:
                self.feed.add_change(rec)

    def status(self) -> dict[str, Any]:
        return {"caught_up": self.caught_up, "started_at": self.started_at, "errors": self.errors}


def _static(name: str) -> bytes:
    return (resources.files("streams.web") / "static" / name).read_bytes()


def register(app: Any, ctx: WorkerContext) -> OncallReader:
    """Declare the on-call routes, the feed's background task and the consumer-lag sampler."""
    from faust.web import Request, Response, View

    from streams.observability import lag
    from streams.web.views import authorized

    lag.register(app, ctx)
    settings: Settings = ctx.settings
    feed = OncallFeed()
    reader = OncallReader(settings, feed, lambda: local_counters(ctx.metrics))
    ctx.oncall = reader
    worker = f"{socket.gethostname()}:{os.getpid()}"
    assets = {"oncall.js": ("application/javascript", _static("oncall.js")),
              "oncall.css": ("text/css", _static("oncall.css"))}
    page = _static("oncall.html")

    @app.task
    async def _oncall_feed() -> None:
        await reader.run()

    @app.page("/oncall")
    async def oncall_page(self: View, request: Request) -> Response:
        return self.bytes(page, content_type="text/html")

    @app.page("/oncall/{asset}")
    async def oncall_asset(self: View, request: Request, asset: str) -> Response:
        if asset == "data":
            if not authorized(settings.web_token, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            body = feed.snapshot()
            body.update(namespace=settings.namespace, worker=worker, generated_at=time.time(), feed=reader.status())
            return self.bytes(orjson.dumps(body), content_type="application/json",
                              headers={"Cache-Control": "no-store"})
        found = assets.get(asset)
        if found is None:
            return self.json({"error": "not found"}, status=404)
        return self.bytes(found[1], content_type=found[0])

    return reader
