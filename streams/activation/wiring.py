"""Thin Faust wiring of the activation stage (the pure parts are definitions, traits, audiences,
stage). Three hooks, all called from streams/profiles/agent.py and streams/app.py:

- :func:`prepare` (app.py, before the profiles agent is declared): load and validate the
  definitions file, put an :class:`Activation` into ``ctx.activation``.
- :meth:`Activation.wrap` (profiles agent): the profile stage wrapped by the activation stage.
- :meth:`Activation.settle` (profiles agent, per record, before the sends are awaited and the
  writes made): every changed key is settled; its audience changes and profile update are handed
  to the agent, which batches them (memory store: the changelog flush sends them and awaits them
  before the changelog records of the values they publish) or sends them and awaits them with
  the record's other must-land sends, so a value is never in the changelog (which makes a replay
  skip its record) before its changes are in Kafka.
- :func:`register` (app.py): the re-evaluation timer (``activate`` controls for profiles whose
  traits depend on time, at most ``TOUCHPOINT_REEVALUATE_PER_TICK`` per tick) and the gauge of
  members per audience.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faust
import msgspec
import orjson
from prometheus_client import Counter, Gauge

from streams.activation.definitions import Definitions, DefinitionsError, load
from streams.activation.stage import ActivationStage
from streams.kafka import topics as T
from streams.kafka.delivery import tables_recovered
from streams.profiles.bundle import key_partition
from streams.profiles.stage import ProfileStage

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["Activation", "prepare", "register", "TICK_S", "SCAN_PER_TICK"]

log = logging.getLogger(__name__)

TICK_S = 5.0
SCAN_PER_TICK = 5000  # table values looked at per tick (a full pass feeds the gauge)
_ACTIVATE = orjson.dumps({"control": "activate"})


class Activation:
    """One worker's activation layer: definitions, metrics, the wrapped stage."""

    def __init__(self, defs: Definitions, registry: Any) -> None:
        self.defs = defs
        self.stage: ActivationStage | None = None
        self.members = Gauge("touchpoint_audience_members", "Members per audience in the partitions this worker owns (updated once per scan of its table).",
                             ["audience"], registry=registry)
        self.changes = Counter("touchpoint_audience_changes", "Audience entries and exits published.", ["change"], registry=registry)
        self.updates = Counter("touchpoint_profile_updates", "Records published on profile-updates, by type.", ["type"], registry=registry)
        self.errors = Counter("touchpoint_activation_errors", "Profiles written without settling their traits and audiences because settling raised (a bug: see the log).", registry=registry)
        self.reevaluations = Counter("touchpoint_activation_reevaluations", "activate controls sent for profiles whose traits depend on time.", registry=registry)
        for a in defs.audiences:
            self.members.labels(a.name).set(0)
        self._changed = {"entered": self.changes.labels("entered"), "exited": self.changes.labels("exited")}
        self._updated = {k: self.updates.labels(k) for k in ("profile", "redirect", "tombstone")}

    def wrap(self, inner: ProfileStage) -> ActivationStage:
        self.stage = ActivationStage(inner, self.defs)
        return self.stage

    def settle(self, staged: dict[bytes, tuple[bytes, Any]], stored: Callable[[bytes], bytes | None],
               publish: Callable[[str, bytes, bytes | None], None], at_ms: int | None = None) -> None:
        """Settle every staged key in place (its value gains the published state) and hand its
        records to ``publish(logical topic, key, value)``, in order (the agent batches them, or
        sends them and awaits them with the record's must-land sends). ``at_ms``: the input
        record's timestamp, stamped on what it publishes (ActivationStage.settle)."""
        assert self.stage is not None
        kinds: dict[str, int] = {}  # records published per kind: the counters move once per call
        try:
            for key, (value, extra) in list(staged.items()):
                try:
                    new, outs = self.stage.settle(key.decode(), stored(key), value, at_ms)
                except Exception:
                    # A bug here must not stop the partition (the record would be replayed forever):
                    # the profile is written unsettled, counted and logged; its next change settles it.
                    self.errors.inc()
                    log.exception("activation: could not settle profile %s; written without its traits/audiences update", key[:64])
                    continue
                for out in outs:
                    publish(out.topic, out.key.encode(), out.value)
                    kinds[out.kind] = kinds.get(out.kind, 0) + 1
                staged[key] = (new, extra)
        finally:
            for kind, n in kinds.items():
                counter = self._changed.get(kind) or self._updated.get(kind)
                if counter is not None:
                    counter.inc(n)


def prepare(ctx: WorkerContext) -> Activation:
    """Load the definitions (TOUCHPOINT_TRAITS; a bad file raises DefinitionsError, one line)."""
    defs = load(ctx.settings.traits)
    if any(d.kind == "webhook" for d in defs.destinations) and not ctx.settings.webhook_secret:
        raise DefinitionsError(f"{defs.path}: webhook destinations need TOUCHPOINT_WEBHOOK_SECRET (the key their requests are signed with)")
    activation = Activation(defs, ctx.metrics.registry)
    ctx.activation = activation
    return activation


def register(app: faust.App, ctx: WorkerContext) -> None:
    """The re-evaluation timer and the members gauge (needs the profiles table)."""
    activation = ctx.activation
    assert activation is not None, "activation.prepare runs before register"
    table = ctx.profiles_table
    s = ctx.settings
    topic = s.topic(T.PROFILE_EVENTS)
    direct = s.store.startswith("memory")
    scanner = Rescan(SCAN_PER_TICK, s.reevaluate_per_tick)
    if activation.defs.destinations:
        _forward(app, ctx, activation)

    def active_keys() -> list[bytes]:
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
        data = table.data if direct else table
        return [k for k in list(data.keys()) if key_partition(k, s.partitions) in active]

    @app.timer(TICK_S)
    async def reevaluate() -> None:
        try:
            if app.rebalancing or not tables_recovered(app):
                return
            get = table.data.get if direct else table.get
            due, counts = scanner.tick(active_keys, get, time.time_ns() // 1_000_000)
            if counts is not None:
                for a in activation.defs.audiences:
                    activation.members.labels(a.name).set(counts.get(a.name, 0))
            for key in due:
                await app.producer.send(topic, key, _ACTIVATE, partition=None, timestamp=None, headers=None)
            if due:
                activation.reevaluations.inc(len(due))
        except Exception:
            log.exception("activation: re-evaluation tick failed")


class _Settled(msgspec.Struct):
    ax: Any = None


_SETTLED = msgspec.json.Decoder(_Settled)


def activation_state(raw: bytes) -> dict[str, Any]:
    """The ``ax`` part of a profile value (``{}`` without one), the rest of the value parsed but
    not built: the timer reads thousands of values a tick for it (~1.5 us against ~5.5 us for the
    whole value of a typical profile, docs/performance.md, session 10).

    >>> activation_state(b'{"v":1,"tl":[[1,"web","track","x"]],"ax":{"due":5}}'), activation_state(b'{"v":1}')
    ({'due': 5}, {})
    """
    return _SETTLED.decode(raw).ax or {}


class Rescan:
    """The timer's bounded walk over the worker's profiles (pure: keys and values are passed in).

    Each :meth:`tick` looks at the next ``per_tick`` keys of the current pass and returns the keys
    whose traits are due for re-evaluation (``ax.due`` passed; at most ``max_due`` a tick; the
    rest are found again next pass) and, when a pass ends, the members per audience it counted."""

    def __init__(self, per_tick: int, max_due: int) -> None:
        self.per_tick = per_tick
        self.max_due = max_due
        self.keys: list[bytes] = []
        self.i = 0
        self.counts: dict[str, int] = {}
        self.fresh = True

    def tick(self, keys: Callable[[], list[bytes]], get: Callable[[bytes], bytes | None], now_ms: int) -> tuple[list[bytes], dict[str, int] | None]:
        finished = None
        if self.i >= len(self.keys):
            if not self.fresh:
                finished = self.counts
            self.keys, self.i, self.counts, self.fresh = keys(), 0, {}, False
        due: list[bytes] = []
        for key in self.keys[self.i: self.i + self.per_tick]:
            raw = get(key)
            if not raw or raw.startswith(b'{"tomb"'):  # (reading ax alone costs less than searching the value for it)
                continue
            ax = activation_state(raw)
            for name, k in (ax.get("m") or {}).items():
                if k % 2:
                    self.counts[name] = self.counts.get(name, 0) + 1
            when = ax.get("due")
            if when is not None and when <= now_ms and len(due) < self.max_due:
                due.append(key)
        self.i += self.per_tick
        return due, finished


def _forward(app: faust.App, ctx: WorkerContext, activation: Activation) -> None:
    """One forwarder per destination, in every worker (the destination's consumer group shares the
    partitions of the public streams among the workers)."""
    from streams.activation.forwarder import Forwarder

    counter = Counter("touchpoint_destination_deliveries", "Deliveries to destinations by outcome (delivered, dead_lettered).",
                      ["destination", "outcome"], registry=ctx.metrics.registry)
    forwarders = [Forwarder(ctx.settings, d, counter) for d in activation.defs.destinations]

    async def keep_running(f: Forwarder) -> None:
        while not f.stopped:
            try:
                await f.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("destination %s: forwarder failed; restarting in 2 s (uncommitted records are re-delivered)", f.dest.name)
                await asyncio.sleep(2.0)

    @app.task
    async def forward() -> None:
        await asyncio.gather(*(keep_running(f) for f in forwarders))

    @app.on_before_shutdown.connect
    async def _stop(sender: Any, *args: Any, **kwargs: Any) -> None:
        for f in forwarders:
            f.stop()
