"""The demand stage: partial counts in, closed event-time buckets through the monitors, alerts out.

Kept free of Faust so it can be driven with plain dicts in tests; ``agent.py`` feeds it one
``demand-counts`` record at a time and binds ``state`` / ``clocks`` to changelog-backed tables.

State (all JSON-safe, so a table's changelog restores it exactly):

``state[series]`` - one entry per series, a dimension key and a measure, written
``MEASURE/KEY`` (``units/category_region:masks|hubei``, :func:`series_key`; an entry under a bare
dimension key is the pre-measure ``events`` count, see :data:`LEGACY_MEASURE`)::

    {"v": 1,
     "q": 0,                          # demand-counts partition the key lives on
     "next": 1767571200000,           # first bucket start not yet fed to the monitor
     "open": {"1767578400000": 12},   # counts of buckets not closed yet
     "src": {"3": [4711, [b, ...]]},  # per source input partition: last offset applied and
                                      # the buckets applied at that offset (replay skip)
     "pool": [0.42, 288, 0.4],        # EWMA of counts per closed bucket, buckets seen, and the
                                      # level before a rise (follows the EWMA down, up over 3 days)
     "mon": {...} | None,             # DemandMonitor.snapshot(); None while the key is pooled
     "prior": 0.42}                   # optional: pooled level when the key was promoted

**Pooling (bounded memory).** A key whose recent volume (``pool`` EWMA over about a day of
buckets) is below ``pool_floor`` events per hour keeps only that EWMA: no monitor, no seasonal
slots (~125 bytes instead of ~2.8 KB with hourly, ~7.5 KB with 5-min buckets). It gets a full
:class:`DemandMonitor` the first time the EWMA reaches the floor (a new key's EWMA is the plain
mean of its first buckets; it is pooled for at least ``pool_min_s``), cold-started with the pooled level as its ``prior`` (so the rise that
promoted it is judged against the level it came from), and goes back to the pool only when the
EWMA falls below ``pool_release`` x the floor *and* no alert is open (hysteresis; a collapse of a
full key to 0 is detected long before a day-long EWMA drains, and an open alert pins the key).

``clocks[str(q)]`` - the event-time clock of one demand-counts partition::

    {"max_b": 1767582000000,          # largest bucket start seen on the partition
     "closed": 1767574800000}         # every bucket starting before this is closed

Watermark of partition ``q`` = ``max_b - lateness``. Bucket ``[s, s + size)`` closes once
``s + size <= watermark``; then every key of ``q`` is fed its due buckets in time order,
including zero buckets, so a collapse to 0 is visible. A partial count for a bucket that is
already closed is late: it is counted in a metric and never reopens the bucket.

Each decision uses only buckets that closed before it (invariant 6: alerts are causal).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streams.demand.buckets import DAY_S, iso_utc
from streams.demand.corroboration import GATED_MEASURES, corroborators
from streams.demand.dimensions import LEGACY_MEASURE, MEASURES
from streams.demand.foresight import Foresight, ForesightConfig
from streams.demand.lifecycle_config import ESCALATE, NEW_NORMAL, OPEN, RESOLVED, AlertRecord
from streams.demand.live import LiveCache
from streams.demand.monitor import DemandMonitor
from streams.demand.partials import parse_partial, partial_message
from streams.demand.series import (
    DEFAULT_MIN_EXCESS,
    list_series,
    parse_min_excess,
    parse_series_key,
    read_monitor,
    series_key,
)
from streams.demand.slicing import CloseInterrupted, run_sliced
from streams.demand.stage_config import SUMMED, StageConfig
from streams.unmetered import Unmetered

if TYPE_CHECKING:  # passed in by the wiring; importing it would load prometheus_client (docs/architecture.md)
    from streams.observability.metrics import Metrics

__all__ = ["ALERT_SCHEMA_ID", "DEFAULT_MIN_EXCESS", "SUMMED", "StageConfig", "Outcome", "DemandStage", "CloseInterrupted", "parse_partial",
           "series_key", "parse_series_key", "list_series", "read_monitor", "parse_min_excess"]

log = logging.getLogger(__name__)

ALERT_SCHEMA_ID = "touchpoint.alert.v1"
STATE_TABLE, CLOCK_TABLE = "demand", "demand_clock"  # the agent's Faust table names
_STATE_VERSION = 1
# Live DemandMonitors (and, in Foresight, forecasters) kept between bucket closes, see
# DemandStage._live_monitor. Measured with 5-min buckets: ~20 KB per series for the live monitor
# and forecaster together (the snapshot dicts are held by the table anyway), so 20,000 series
# cost ~400 MB at most. Only a store that hands back the objects it was given (memory://) hits;
# with rocksdb:// every read is a new dict, the identity check always misses (correct, no gain).
LIVE_CACHE = 20_000
@dataclass
class Outcome:
    """What one partial count did; ``commit`` applies ``writes`` / ``clock`` to the tables.

    status: ``applied``, ``late`` (bucket already closed, not counted), ``replayed``
    (already applied before a crash, skipped) or ``future`` (bucket beyond the horizon, refused).
    """

    status: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    writes: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: tuple[str, dict[str, int]] | None = None
    closed_buckets: int = 0
    partition: int = -1  # the demand-counts partition of the record (every key written lives on it)


def _direction(d: int) -> str:
    return "surge" if d > 0 else "collapse"


class DemandStage:
    """Applies partial counts, closes buckets by watermark, runs one DemandMonitor per key.

    ``state`` and ``clocks`` are mappings (Faust tables in the worker, dicts in tests). The stage
    also keeps, in memory only, the keys of each partition and the open alerts (for the gauge);
    both are rebuilt from ``state`` the first time a partition is seen after :meth:`forget`.
    """

    def __init__(self, config: StageConfig, state: MutableMapping[str, Any], clocks: MutableMapping[str, Any],
                 metrics: Metrics | None = None, live_cache: int = LIVE_CACHE) -> None:
        self.config = config
        self.state = state
        self.clocks = clocks
        self.metrics: Any = metrics if metrics is not None else Unmetered()
        self._detector_cfg = config.detector_config()
        self.foresight = Foresight(ForesightConfig(bucket_s=config.bucket_s, tz=config.timezone), live_models=live_cache)
        self._lifecycle_cfgs = {m: config.lifecycle_config(m) for m in (*MEASURES, LEGACY_MEASURE)}
        self._keys: dict[int, set[str]] = {}  # partition -> series keys
        self._open: dict[str, tuple[str, str, str]] = {}  # series key -> (dimension type, measure, direction)
        self._published: set[tuple[str, str, str]] = set()
        # series key -> (the "mon" snapshot dict this stage last wrote, the live monitor it came from)
        self._live: LiveCache[DemandMonitor] = LiveCache(live_cache)
        # How commit writes a table entry: (table name, key, value, partition); None = item
        # assignment on ``state`` / ``clocks``. The agent sets its coalescing writer (writes.py).
        self.write: Callable[[str, str, Any, int], None] | None = None
        self.on_slice: Callable[[], None] | None = None  # between slices of a close (the agent's GC policy)
        self._generation = 0  # counts forget() calls: a sliced close that sees it change is redone
        # The published open alerts of every worker (series key -> direction, open_alerts.py), set
        # by the agent; None: only this stage's own partitions are seen (tests, replays, one worker).
        self.elsewhere: Mapping[str, str] | None = None

    # ------------------------------------------------------------------ API
    def handle(self, partition: int, value: bytes | dict[str, Any]) -> Outcome:
        """Process one partial count and commit it (what tests and simple callers want)."""
        outcome = self.process(partition, value)
        self.commit(outcome)
        return outcome

    def process(self, partition: int, value: bytes | dict[str, Any]) -> Outcome:
        """Work out what one partial count changes, without writing anything yet.

        The agent sends the alerts first and then calls :meth:`commit`, so a failed send leaves
        the tables untouched and the record is processed again on replay (at-least-once).
        """
        outcome, close = self._apply(partition, value)
        for _ in close:
            pass
        return outcome

    async def process_sliced(self, partition: int, value: bytes | dict[str, Any], budget_s: float | None = None) -> Outcome:
        """:meth:`process`, with a bucket close run in slices of ``budget_s`` (default
        ``config.close_slice_s``) that hand the event loop back in between (slicing.py).

        The outcome is identical to :meth:`process`'s and, as there, nothing is written until
        :meth:`commit`: a crash or a failure half-way through a close leaves the tables and the
        committed offset as they were, and the record is processed again from the commit, which
        redoes the whole close (the live cache cannot serve a half-advanced monitor, see
        :meth:`_live_monitor`). A rebalance that reaches the stage (:meth:`forget`) during the
        close raises :class:`CloseInterrupted`: the agent then fails the record (redone from the
        commit by whoever owns the partition) instead of committing a close begun before it.
        """
        generation = self._generation
        outcome, close = self._apply(partition, value)
        await run_sliced(close, self.config.close_slice_s if budget_s is None else budget_s, on_slice=self.on_slice)
        if generation != self._generation:
            raise CloseInterrupted(f"partition {partition}: rebalanced during a bucket close; processed again from the commit")
        return outcome

    def _apply(self, partition: int, value: bytes | dict[str, Any]) -> tuple[Outcome, Iterator[None]]:
        """The outcome of one partial count, and the steps of the bucket close it triggers (one
        per key, empty when it closes nothing): the outcome is complete once they have run."""
        msg = partial_message(value)  # decoded once: parse_partial reads it, and so does the parent below
        dim_key, measure, bucket, parts = parse_partial(msg)
        if measure not in self.config.measures:
            return Outcome("unwatched"), iter(())  # e.g. legacy records of the old event count
        key = series_key(dim_key, measure)
        size = self.config.size_ms
        bucket -= bucket % size  # tolerate a producer with a finer bucket
        if self.config.max_future_s and bucket > time.time_ns() // 1_000_000 + self.config.max_future_s * 1000:
            # Defence in depth behind ingest's event-time window: a bucket from the future would
            # move the partition's clock (kept in its changelog) ahead of real time for good.
            return Outcome("future"), iter(())
        entry = self.state.get(key)
        if entry is not None:
            parts = [part for part in parts if not self._already_applied(entry, part[0], part[2], bucket)]
            if not parts:
                return Outcome("replayed"), iter(())
        count = sum(n for _, n, _ in parts)

        qkey = str(partition)
        clock = self.clocks.get(qkey)
        closed = clock["closed"] if clock else None
        late = closed is not None and bucket < closed
        new = self._copy(entry, partition, first=closed if late and closed is not None else bucket)
        parent = msg.get("in")  # a product's category (corroboration.py), sent by ingest when known
        if isinstance(parent, str) and parent != new.get("up"):
            new["up"] = parent
        if not late:
            buckets = new["open"]
            buckets[str(bucket)] = buckets.get(str(bucket), 0) + count
            new["next"] = min(new["next"], bucket)
        for src_p, _, src_o in parts:
            last = new["src"].get(str(src_p))
            applied_at_o = list(last[1]) if last is not None and last[0] == src_o else []
            new["src"][str(src_p)] = [src_o, applied_at_o + [bucket]]
        outcome = Outcome("late" if late else "applied", writes={key: new}, partition=partition)
        self._keys_of(partition).add(key)

        # Advance the partition's event-time clock and close what the watermark passed.
        max_b = bucket if clock is None else max(clock["max_b"], bucket)
        wm = max_b - self.config.lateness_s * 1000
        target = wm - wm % size
        close: Iterator[None] = iter(())
        if closed is None:
            closed = target
        elif target > closed:
            close = self._close_steps(partition, target, outcome)
            closed = target
        new_clock = {"max_b": max_b, "closed": closed}
        if new_clock != clock:
            outcome.clock = (qkey, new_clock)
        return outcome, close

    def commit(self, outcome: Outcome) -> None:
        """Write the outcome's table entries and update the metrics."""
        put = self.write
        if put is None:
            for key, value in outcome.writes.items():
                self.state[key] = value
            if outcome.clock is not None:
                self.clocks[outcome.clock[0]] = outcome.clock[1]
        else:
            for key, value in outcome.writes.items():
                put(STATE_TABLE, key, value, outcome.partition)
            if outcome.clock is not None:
                put(CLOCK_TABLE, outcome.clock[0], outcome.clock[1], outcome.partition)
        m = self.metrics
        if outcome.status == "late":
            m.demand_late_counts.inc()
        elif outcome.status == "replayed":
            m.demand_replayed_counts.inc()
        elif outcome.status == "future":
            m.demand_future_counts.inc()
        elif outcome.status == "unwatched":
            m.demand_uncounted.labels("unwatched_measure").inc()
        for alert in outcome.alerts:
            m.demand_alert_transitions.labels(alert["state"], alert["measure"]).inc()
            skey = series_key(alert["key"], alert["measure"])
            if alert["state"] == OPEN:
                self._open[skey] = (alert["dimension"], alert["measure"], alert["direction"])
            elif alert["state"] in (RESOLVED, NEW_NORMAL):
                self._open.pop(skey, None)
        if outcome.alerts:
            self._publish_open()
        m.demand_keys.set(sum(len(keys) for keys in self._keys.values()))

    def forget(self) -> None:
        """Drop the in-memory key index (after a rebalance); it is rebuilt from ``state``."""
        self._generation += 1
        self._keys.clear()
        self._open.clear()
        self._live.clear()
        self.foresight.forget()
        self._publish_open()

    def keys_of(self, partition: int) -> set[str]:
        """Dimension keys living on a demand-counts partition (a copy)."""
        return set(self._keys_of(partition))

    # ------------------------------------------------------------- internals
    @staticmethod
    def _already_applied(entry: dict[str, Any], src_p: int, src_o: int, bucket: int) -> bool:
        # One ingest batch sends several buckets of a key with the same (p, o): the buckets
        # applied at the last offset are remembered so only true re-sends are skipped.
        last = entry["src"].get(str(src_p))
        if last is None:
            return False
        offset, buckets = last
        return src_o < offset or (src_o == offset and bucket in buckets)

    @staticmethod
    def _copy(entry: dict[str, Any] | None, partition: int, first: int) -> dict[str, Any]:
        # Never mutate what the table holds: a memory store hands out its own objects.
        if entry is None:
            return {"v": _STATE_VERSION, "q": partition, "next": first, "open": {}, "src": {}, "mon": None}
        out = {"v": _STATE_VERSION, "q": entry["q"], "next": entry["next"], "open": dict(entry["open"]),
               "src": dict(entry["src"]), "mon": entry["mon"]}
        for extra in ("pool", "prior", "fc", "up"):
            if extra in entry:
                out[extra] = entry[extra]
        return out

    def _keys_of(self, partition: int) -> set[str]:
        keys = self._keys.get(partition)
        if keys is None:
            keys = set()
            for key, entry in list(self.state.items()):
                dim_key, measure = parse_series_key(key)
                if entry and entry.get("q") == partition and measure in self.config.measures:
                    keys.add(key)
                    lifecycle = (entry.get("mon") or {}).get("lifecycle") or {}
                    if lifecycle.get("alert_id") and lifecycle.get("published", True):
                        self._open[key] = (dim_key.partition(":")[0], measure, _direction(lifecycle["direction"]))
            self._keys[partition] = keys
            self._publish_open()
        return keys

    def _close_steps(self, partition: int, target: int, outcome: Outcome) -> Iterator[None]:
        """Feed the due buckets (before ``target``) of every key of the partition to its monitor,
        one key per step, in key order (the same order however the steps are sliced)."""
        for key in sorted(self._keys_of(partition)):
            self._close_key(key, partition, target, outcome)
            yield

    def _close_key(self, key: str, partition: int, target: int, outcome: Outcome) -> None:
        """Feed one key its buckets before ``target``; its new entry and alerts go to ``outcome``."""
        size = self.config.size_ms
        floor = target - self.config.gap_buckets * size
        entry = outcome.writes.get(key) or self.state.get(key)
        if entry is None or entry["q"] != partition:
            return
        start = entry["next"]
        due_open = sorted(int(s) for s in entry["open"] if int(s) < target)
        if start >= target and not due_open:
            return  # the key appeared in a bucket that is still open
        # After a long silence, emit at most a week of zero buckets per key.
        due = sorted(set(due_open) | set(range(max(start, floor), target, size)))
        dim_key, measure = parse_series_key(key)
        dimension = dim_key.partition(":")[0]
        cfg = self.config
        pooling = cfg.pool_floor > 0.0
        level, seen, *rest = entry.get("pool") or (0.0, 0)
        base = float(rest[0]) if rest else level  # the level before a rise (entries written before it: the level)
        prior = entry.get("prior")
        mon = None if entry["mon"] is None else self._live_monitor(key, dim_key, measure, entry["mon"])
        if mon is not None and "pool" not in entry:
            # Written before pooling existed: seed the volume EWMA from the detector's level.
            level, seen = max(mon.detector.level, 0.0), mon.detector.level_n
            base = level
        fc, fc_due = entry.get("fc"), []  # the series' forecaster (foresight.py), fed the same buckets
        gate = self._corroboration(dim_key, measure, entry.get("up"), outcome)
        for s in due:
            count = entry["open"].get(str(s), 0)
            before = level if seen else None
            base_before = base if seen else None
            seen += 1
            level += max(cfg.pool_alpha, 1.0 / seen) * (count - level)
            base = level if level < base or seen == 1 else base + cfg.pool_base_alpha * (level - base)
            if mon is None and (not pooling or (level >= cfg.floor_per_bucket(measure) and seen >= cfg.pool_min_buckets)):
                # Promotion: a cold-started monitor, its prior the pooled level it rose from,
                # when that level rests on two days or more (a long-tail key rising); a series
                # seen for less has no history to judge a shift against (no prior: the
                # lifecycle raises nothing until the detector's daily tier exists).
                mon = self._monitor(dim_key, measure, None)
                known = seen - 1 >= 2 * DAY_S // cfg.bucket_s
                prior = before if pooling and before is not None and known else None
                if prior is not None and base_before is not None:
                    # Remember where the key rose from (before a surge that promoted it mid-way):
                    # falling back there within the next days is no collapse.
                    mon.lifecycle.remember_rise(min(base_before, prior))
            if mon is None:
                continue
            decision, records = mon.update(s, count, prior, gate)
            alerts = [self._alert(r, dimension, s) for r in records]
            fc_due.append((s, count, decision.expected, alerts))
            if any(a["state"] == OPEN for a in alerts):  # OPEN carries the next day if the shift holds
                fc, fc_due = self.foresight.feed_many(fc, fc_due), []
                for a in alerts:
                    if a["state"] == OPEN and (forecast := self.foresight.alert_forecast(fc, a)) is not None:
                        a["forecast"] = forecast
            outcome.alerts.extend(alerts)
            if (pooling and level < cfg.floor_per_bucket(measure) * cfg.pool_release
                    and not mon.lifecycle.active and mon.detector.direction == 0):
                mon, prior = None, None  # back to the pool: drop the monitor
        outcome.closed_buckets += len(due)
        open_left = {s: c for s, c in entry["open"].items() if int(s) >= target}
        new = {**entry, "next": max(start, target), "open": open_left,
               "pool": [level, min(seen, 1_000_000), base], "mon": None if mon is None else self._keep_live(key, mon)}
        new.pop("prior", None)
        if prior is not None and mon is not None:
            new["prior"] = prior
        new.pop("fc", None)
        if mon is not None:  # pooled series keep no forecaster (their state stays ~125 bytes)
            new["fc"] = self.foresight.feed_many(fc, fc_due) if fc_due else fc
        outcome.writes[key] = new

    def _corroboration(self, dim_key: str, measure: str, parent: str | None,
                       outcome: Outcome) -> Callable[[int], bool] | None:
        """The corroboration rule's check for one series (corroboration.py), over the series this
        stage can see: the same key's (its partition) and those of the parent category when its
        entries live on a partition this stage has processed. None: the series is not gated. The
        check holds when no corroborator is visible here (the series is published as before);
        it runs only when the lifecycle is about to publish."""
        if measure not in GATED_MEASURES:
            return None
        names = corroborators(dim_key, measure, self.config.measures, parent)
        if not names:
            return None

        def corroborated(direction: int) -> bool:
            want, seen, elsewhere = _direction(direction), False, self.elsewhere
            # This close's transitions so far (committed only afterwards): the last one per series wins.
            closing = {series_key(a["key"], a["measure"]): a["direction"] if a["state"] in (OPEN, ESCALATE) else None
                       for a in outcome.alerts}
            for name in names:
                entry = outcome.writes[name] if name in outcome.writes else self.state.get(name)
                now: str | None
                if entry is not None and entry.get("q") in self._keys:
                    held = self._open.get(name)
                    now = closing[name] if name in closing else (held[2] if held else None)
                elif elsewhere is not None and name.partition("/")[2] != dim_key:
                    now = elsewhere.get(name)  # the category, on a partition another worker owns
                else:
                    continue
                seen = True
                if now == want:
                    return True
            return not seen

        return corroborated

    def event_now_ms(self) -> int | None:
        """The latest bucket this stage has seen on the partitions it processed (event time)."""
        latest = [c["max_b"] for p in self._keys if (c := self.clocks.get(str(p)))]
        return max(latest) if latest else None

    def _live_monitor(self, key: str, dim_key: str, measure: str, snapshot: dict[str, Any]) -> DemandMonitor:
        """The series' monitor as of ``snapshot``: the live one kept since the last close when
        ``snapshot`` is the very dict that close wrote, else restored from it (live.py: why safe)."""
        live = self._live.take(key, snapshot)
        return live if live is not None else self._monitor(dim_key, measure, snapshot)

    def _keep_live(self, key: str, mon: DemandMonitor) -> dict[str, Any]:
        """Snapshot ``mon`` for the table and keep it live under that snapshot (bounded LRU)."""
        snap = mon.snapshot()
        self._live.keep(key, snap, mon)
        return snap

    def _monitor(self, key: str, measure: str, snapshot: dict[str, Any] | None) -> DemandMonitor:
        # Cold start: no parent prior (parents live on other partitions); the detector's level
        # model takes over after a few buckets, its time-of-day/week tiers after two seasons.
        dimension, lc_cfg = key.partition(":")[0], self._lifecycle_cfgs[measure]
        if snapshot is None:
            return DemandMonitor(key, dimension, self._detector_cfg, lc_cfg, measure)
        return DemandMonitor.from_snapshot(snapshot, key, dimension, self._detector_cfg, lc_cfg, measure)

    def _alert(self, record: AlertRecord, dimension: str, bucket: int) -> dict[str, Any]:
        out = record.to_dict()
        out.update(
            schema=ALERT_SCHEMA_ID,
            dimension=dimension,
            value=record.key.partition(":")[2],
            bucket_end=iso_utc(bucket + self.config.size_ms),
            bucket_s=self.config.bucket_s,
            worker=self.config.worker,
        )
        return out

    def _publish_open(self) -> None:
        counts = Counter(self._open.values())
        gauge = self.metrics.demand_alerts_open
        for dimension, measure, direction in set(counts) | self._published:
            gauge.labels(dimension, measure, direction).set(counts.get((dimension, measure, direction), 0))
        self._published |= set(counts)
