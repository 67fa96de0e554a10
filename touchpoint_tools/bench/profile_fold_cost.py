"""Micro-benchmark: CPU cost per item of the profiles stage (no Kafka, no Redis, no Faust).

Builds a realistic ``profile-events`` stream the way ingest does: simulator events from
``touchpoint_tools.bench.pipeline.workload.make_records`` (with a fixed clock, so every run builds the same bytes),
decoded and normalised (``Normalizer`` as in ``streams/app.py``), resolved by the in-memory
identity graph (merges happen as people's identifiers meet), emitted as merge controls + events
and bundled per batch and partition (``bundle.encode_bundles``). Some input batches are
redelivered (same claims: the graph replays its first reply, the stage drops them by watermark),
some events come again under another claim (dropped by the recent message-id hashes), a few
profiles are erased, and some profile-events records are processed twice (agent replay after a
crash). The profiles "agent" is simulated as in ``agent.py``: per record, items are unbundled,
decided against ``staged`` or the table, then written; sends land at the end of their partition.

Timed (best of ``--repeats``, microseconds per item; wall time, or CPU time with ``--cpu``):

- ``decide``: the whole recorded stream through ``ProfileStage.decide`` with a dict as the table
  (``--keep-decoded N``: keeping decoded values across records, dropped every ``--flush-items``);
- ``decode`` / ``fold`` / ``encode`` of the stored values and events of the applied events;
- ``digest`` + ``parse_source`` per event, ``unbundle`` per item of the bundles.

``--record PATH`` stores the outcome of every item and the final table (pickle); ``--check PATH``
compares this run with such a file (any difference in stored bytes, outcomes or sends fails).

    .venv/bin/python touchpoint_tools/bench/profile_fold_cost.py [--events 20000] [--repeats 5] [--record|--check /tmp/f.pkl]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import orjson

from streams.events.model import Touchpoint
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest, parse
from streams.identity.rules import IdentityRules
from streams.ingest.decode import decode as decode_event
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles.bundle import encode_bundles, key_partition, position, unbundle
from streams.profiles.profile import Limits, decode, encode, fold, new_profile
from streams.profiles.stage import ProfileStage, message_digest, parse_source
from touchpoint_tools.bench.pipeline.workload import make_records

FIXED_NOW_S = 1_780_000_000.0  # make_records places events "ending now": pin now for identical bytes
PARTITIONS = 4                  # profile-events partitions
INPUT_PARTITIONS = 3
BATCH = 250                     # input records per ingest batch

Record = tuple[int, int, bytes, bytes]  # (partition, offset, key, value) of profile-events


def _h(value: bytes | None) -> str | None:
    return None if value is None else hashlib.sha256(value).hexdigest()


class Simulation:
    """Ingest + profiles agent over in-memory partition logs; records every decision."""

    def __init__(self, events: int, stage: ProfileStage) -> None:
        self.stage = stage
        with mock.patch("time.time", return_value=FIXED_NOW_S):
            self.raw = make_records(events)
        self.normalizer = Normalizer(PiiHasher("bench-fixed-pii-key"), "CN", 86_400_000)
        self.graph = MemoryIdentityGraph(IdentityRules())
        self.logs: list[list[tuple[bytes, bytes]]] = [[] for _ in range(PARTITIONS)]
        self.cursor = [0] * PARTITIONS
        self.table: dict[bytes, bytes] = {}
        self.schedule: list[Record] = []            # every record processed, in processing order
        self.outcomes: list[tuple[Any, ...]] = []   # one per item processed
        self.applied: list[tuple[bytes | None, dict[str, Any]]] = []  # (current, event) of applied events
        self.emitted: list[Touchpoint] = []
        self.pids: list[str] = []

    def claim(self, i: int) -> str:
        return f"ns.touchpoints/{i % INPUT_PARTITIONS}/{i // INPUT_PARTITIONS}"

    def ingest(self, indexes: list[int], extra: list[tuple[bytes, bytes]] = ()) -> None:
        """One ingest batch of input records ``indexes``: decode, normalise, resolve, bundle."""
        touchpoints: list[Touchpoint] = []
        for i in indexes:
            event = decode_event(self.raw[i], 32768)
            if isinstance(event, dict):
                tp = self.normalizer.normalize(event, 1_779_999_000_000 + i)
                if isinstance(tp, Touchpoint):
                    tp.source = self.claim(i)
                    touchpoints.append(tp)
        requests = [ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms) for t in touchpoints]
        emits: dict[int, list[tuple[bytes, bytes]]] = {}
        for tp, res in zip(touchpoints, self.graph.resolve_batch(requests), strict=True):
            if res.outcome not in ("applied",) or res.profile_id is None:
                continue
            tp.profile_id = res.profile_id
            for loser in res.merged:  # as IngestStage._stage_emit
                control = {"control": "merge", "from": loser, "into": res.profile_id, "message_id": tp.message_id, "ts_ms": tp.ts_ms}
                emits.setdefault(key_partition(loser.encode(), PARTITIONS), []).append((loser.encode(), orjson.dumps(control)))
            key = res.profile_id.encode()
            emits.setdefault(key_partition(key, PARTITIONS), []).append((key, tp.to_bytes()))
            self.emitted.append(tp)
            self.pids.append(res.profile_id)
        for key, value in extra:
            emits.setdefault(key_partition(key, PARTITIONS), []).append((key, value))
        for partition, items in emits.items():
            self.logs[partition].extend(encode_bundles(items))

    def process(self, partition: int, offset: int) -> None:
        """The agent's handling of one record (agent.py ``profiles`` + ``apply``)."""
        key, value = self.logs[partition][offset]
        self.schedule.append((partition, offset, key, value))
        staged: dict[bytes, bytes] = {}
        for index, (item_key, record) in enumerate(unbundle(key, value)):
            current = staged.get(item_key)
            if current is None:
                current = self.table.get(item_key)
            snapshot = copy.deepcopy(record) if isinstance(record, dict) else None
            d = self.stage.decide(item_key.decode(), current, record, position(offset, index))
            if d.outcome == "applied" and snapshot is not None and snapshot.get("control") is None:
                self.applied.append((current, snapshot))
            for send in d.sends:
                k = send.key.encode()
                self.logs[key_partition(k, PARTITIONS)].append((k, send.value))
            if d.value is not None:
                staged[item_key] = d.value
            self.outcomes.append((partition, offset, index, item_key, d.outcome, _h(d.value), d.detail, d.identifiers,
                                  tuple((s.key, _h(s.value), s.must_land) for s in d.sends)))
        self.table.update(staged)

    def drain(self) -> None:
        while True:
            busy = False
            for p in range(PARTITIONS):
                while self.cursor[p] < len(self.logs[p]):
                    self.process(p, self.cursor[p])
                    self.cursor[p] += 1
                    busy = True
            if not busy:
                return

    def run(self) -> None:
        n = len(self.raw)
        for b, start in enumerate(range(0, n, BATCH)):
            extra: list[tuple[bytes, bytes]] = []
            if b % 7 == 3 and self.emitted:
                # the same message id under another claim: only the stage's recent hashes catch it
                tp = copy.copy(self.emitted[len(self.emitted) // 2])
                tp.source = f"ns.touchpoints/9/{b}"
                extra.append((tp.profile_id.encode(), tp.to_bytes()))
            if b % 25 == 12 and self.pids:
                pid = self.pids[(b * 7919) % len(self.pids)]
                extra.append((pid.encode(), orjson.dumps({"control": "erase", "profile_id": pid, "ts_ms": 1_779_999_000_000 + b})))
            self.ingest(list(range(start, min(n, start + BATCH))), extra)
            if b % 10 == 9:
                # a redelivered slice of an earlier batch (same claims)
                s = max(0, start - 3 * BATCH)
                self.ingest(list(range(s, s + 40)))
            self.drain()
            if b % 15 == 14:
                # agent replay after a crash: the last records of one partition processed again
                p = b % PARTITIONS
                for offset in range(max(0, self.cursor[p] - 3), self.cursor[p]):
                    self.process(p, offset)


def replay_decisions(stage: ProfileStage, schedule: list[Record]) -> tuple[dict[bytes, bytes], list[tuple[Any, ...]]]:
    """The recorded stream again, outcomes only (sends are in the schedule already)."""
    table: dict[bytes, bytes] = {}
    out = []
    for partition, offset, key, value in schedule:
        staged: dict[bytes, bytes] = {}
        for index, (item_key, record) in enumerate(unbundle(key, value)):
            current = staged.get(item_key)
            d = stage.decide(item_key.decode(), current if current is not None else table.get(item_key), record, position(offset, index))
            if d.value is not None:
                staged[item_key] = d.value
            out.append((partition, offset, index, item_key, d.outcome, _h(d.value), d.detail, d.identifiers,
                        tuple((s.key, _h(s.value), s.must_land) for s in d.sends)))
        table.update(staged)
    return table, out


def best_us(run: Callable[[], tuple[int, int]], repeats: int) -> float:
    """``run`` returns (nanoseconds, items); best of ``repeats`` in microseconds per item.

    The cyclic GC is off while timing: the inputs held for a run (tens of thousands of decoded
    items and states) would otherwise make collections, not the code, dominate the numbers."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            ns, items = run()
        finally:
            gc.enable()
        best = min(best, ns / max(1, items) / 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--record", help="store outcomes and the final table here (pickle)")
    ap.add_argument("--check", help="compare outcomes and the final table with this file")
    ap.add_argument("--cpu", action="store_true",
                    help="time with the process's CPU time instead of wall time (less inflated by other load)")
    ap.add_argument("--keep-decoded", type=int, default=None,
                    help="ProfileStage.keep_decoded (default: the stage's, 0): keep decoded values across records")
    ap.add_argument("--flush-items", type=int, default=150,
                    help="with --keep-decoded: drop the kept values every this many items (150: one 50 ms flush "
                         "window at 3,000 events/s; 0 = never)")
    args = ap.parse_args(argv)
    clock = time.process_time_ns if args.cpu else time.perf_counter_ns

    rules = IdentityRules()
    stage = ProfileStage(Limits(), keep_identifier=lambda f: not rules.is_blocked(parse(f)))  # as agent.py
    if args.keep_decoded is not None:
        stage.keep_decoded = args.keep_decoded
    # The experiment of docs/performance.md (session 8): values kept across records and dropped
    # every --flush-items items, as a cache of the keys written since the last changelog flush would.
    forget = stage.forget_decoded if stage.keep_decoded > 0 and args.flush_items else None
    started = time.perf_counter()
    sim = Simulation(args.events, stage)
    sim.run()
    build_s = time.perf_counter() - started
    counts: dict[str, int] = {}
    for o in sim.outcomes:
        counts[o[4]] = counts.get(o[4], 0) + 1
    print(f"stream: {len(sim.schedule)} records, {len(sim.outcomes)} items, {len(sim.table)} keys, built in {build_s:.1f}s")
    print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    status = 0
    result = {"table": sim.table, "outcomes": sim.outcomes}
    if args.record:
        with open(args.record, "wb") as f:
            pickle.dump(result, f)
        print(f"recorded to {args.record}")
    if args.check:
        with open(args.check, "rb") as f:
            want = pickle.load(f)
        same_table = want["table"] == sim.table
        same_outcomes = want["outcomes"] == sim.outcomes
        print(f"check against {args.check}: table {'identical' if same_table else 'DIFFERS'}, "
              f"outcomes {'identical' if same_outcomes else 'DIFFER'}")
        status = 0 if same_table and same_outcomes else 1

    # The timed replay must decide exactly as the simulation did (no hidden state in the stage).
    table, outcomes = replay_decisions(stage, sim.schedule)
    assert table == sim.table and outcomes == sim.outcomes, "replaying the schedule decided differently"

    def run_decide() -> tuple[int, int]:
        # Fresh items each time: a forward mutates its record (fwd), as in the agent.
        records = [(offset, unbundle(key, value)) for _, offset, key, value in sim.schedule]
        table: dict[bytes, bytes] = {}
        decide = stage.decide
        n = flushed = 0
        if forget is not None:
            forget()
        t0 = clock()
        for offset, items in records:
            if forget is not None and n - flushed >= args.flush_items:
                forget()
                flushed = n
            staged: dict[bytes, bytes] = {}
            for index, (item_key, record) in enumerate(items):
                current = staged.get(item_key)
                d = decide(item_key.decode(), current if current is not None else table.get(item_key), record, position(offset, index))
                if d.value is not None:
                    staged[item_key] = d.value
            n += len(items)
            table.update(staged)
        return clock() - t0, n

    currents = [c for c, _ in sim.applied if c is not None]
    events = [e for _, e in sim.applied]

    def run_decode() -> tuple[int, int]:
        t0 = clock()
        for c in currents:
            decode(c)
        return clock() - t0, len(currents)

    folded: list[dict[str, Any]] = []

    def run_fold() -> tuple[int, int]:
        states = [decode(c) if c is not None else new_profile() for c, _ in sim.applied]
        keep = stage.keep_identifier
        limits = stage.limits
        t0 = clock()
        for state, event in zip(states, events, strict=True):
            fold(state, event, limits, keep)
        ns = clock() - t0
        folded[:] = states
        return ns, len(states)

    def run_encode() -> tuple[int, int]:
        t0 = clock()
        for s in folded:
            encode(s)
        return clock() - t0, len(folded)

    def run_digest() -> tuple[int, int]:
        t0 = clock()
        for e in events:
            message_digest(str(e.get("message_id", "")))
            parse_source(e.get("source"))
        return clock() - t0, len(events)

    bundles = [(k, v) for _, _, k, v in sim.schedule if v.startswith(b'{"bundle":')]
    n_bundled = sum(len(unbundle(k, v)) for k, v in bundles)

    def run_unbundle() -> tuple[int, int]:
        t0 = clock()
        for k, v in bundles:
            unbundle(k, v)
        return clock() - t0, n_bundled

    results: dict[str, Any] = {}
    for name, fn in (("decide", run_decide), ("decode", run_decode), ("fold", run_fold), ("encode", run_encode),
                     ("digest+source", run_digest), ("unbundle", run_unbundle)):
        results[name] = round(best_us(fn, args.repeats), 3)
        print(f"{name:>14}: {results[name]:8.3f} us/item")
    sizes = sorted(len(c) for c in currents)
    results.update(items=len(sim.outcomes), applied=len(events), median_value_bytes=sizes[len(sizes) // 2] if sizes else 0,
                   check=None if not args.check else status == 0)
    print(json.dumps(results))
    return status


if __name__ == "__main__":
    sys.exit(main())
