"""Micro-benchmark: CPU cost per event of computed traits, audiences and profile updates
(no Kafka, no Redis, no Faust), on top of the profiles stage. CPU time of this process
(time.process_time), so other load on the machine inflates the figures less than wall time would.

A seeded population (``touchpoint_tools.simulate.population``) is normalised and resolved by the in-memory
identity graph; event times are spread over the last 110 days so every window holds data. The
same stream of ``profile-events`` (merges and events) is run through:

- ``profile``: ``ProfileStage.decide`` alone (what the agent did before activation);
- ``traits``: ``ActivationStage.decide`` (the profile stage + the computed-trait fold / merge);
- ``settle``: ``ActivationStage.settle`` once per event (the agent settles each changed key once
  per record; ingest bundles hold mostly distinct profiles, so once per event is the upper bound):
  evaluate every trait and audience, diff membership, render and hash the public profile, and
  build the audience / profile-update records;
- ``wiring``: the worker's hand-over around it (``Activation.settle``: each key's records handed
  to the agent and counted), per settled key, the stage's work replayed from a recording;
- ``rescan``: the re-evaluation timer's walk (``Rescan.tick``), per profile value scanned.

Definitions: the file given (default docs/activation.example.toml) and, for comparison, none
(profile updates only). Best of ``--repeats``; microseconds per event; last line one JSON object.

    .venv/bin/python touchpoint_tools/bench/activation_cost.py [--events 20000] [--repeats 3] [--definitions FILE]

The file puts its own checkout first on ``sys.path``; to time another checkout's ``streams`` with
it, run a copy placed outside any checkout with ``PYTHONPATH=<checkout>``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.activation.definitions import Definitions, load
from streams.activation.stage import ActivationStage
from streams.activation.wiring import Activation, Rescan
from streams.events.model import Touchpoint
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles.stage import ProfileStage
from touchpoint_tools.simulate.population import Population

DAY = 86_400_000
NOW = 1_780_000_000_000


def stream(events: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """(key, value) records of profile-events in order: merge controls and events."""
    rng = random.Random(seed)
    normalizer = Normalizer(PiiHasher("bench"), "CN", DAY)
    graph = MemoryIdentityGraph(IdentityRules())
    out = []
    for offset, raw in enumerate(Population(max(50, events // 20), seed=seed).events(events, NOW - 110 * DAY, 3000)):
        t = normalizer.normalize(raw, NOW)
        if not isinstance(t, Touchpoint):
            continue
        t.ts_ms = NOW - rng.randint(0, 110) * DAY - rng.randint(0, DAY - 1)
        if rng.random() < 0.3:
            t.consent = {"marketing": rng.random() < 0.7, "analytics": rng.random() < 0.6}
        t.source = f"b.touchpoints/0/{offset}"
        [res] = graph.resolve_batch([ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms)])
        t.profile_id = res.profile_id
        for loser in res.merged:
            out.append((loser, orjson.dumps({"control": "merge", "from": loser, "into": res.profile_id, "message_id": t.message_id, "ts_ms": t.ts_ms})))
        out.append((res.profile_id, t.to_bytes()))
    return out


def run(records: list[tuple[str, bytes]], decide: Callable[..., Any], settle: Callable[..., Any] | None) -> tuple[float, dict[str, bytes], int]:
    """Seconds for the whole stream (sends applied like the agent: absorbs appended to the log)."""
    table: dict[str, bytes] = {}
    log = list(records)
    outs = 0
    gc.collect()
    started = time.process_time()
    i = 0
    while i < len(log):
        key, value = log[i]
        before = table.get(key)
        d = decide(key, before, value, i)
        for s in d.sends:
            log.append((s.key, s.value))
        if d.value is not None:
            new = d.value
            if settle is not None:
                new, produced = settle(key, before, new)
                outs += len(produced)
            table[key] = new
        i += 1
    return time.process_time() - started, table, outs


def best(repeats: int, fn: Callable[[], tuple[float, dict[str, bytes], int]]) -> tuple[float, dict[str, bytes], int]:
    results = [fn() for _ in range(repeats)]
    return min(results, key=lambda r: r[0])


def measure(records: list[tuple[str, bytes]], defs: Definitions, repeats: int) -> dict[str, Any]:
    n = sum(1 for _, v in records if b'"control"' not in v)
    profile = ProfileStage()
    act = ActivationStage(ProfileStage(), defs, lambda: NOW)
    # Deciding without settling: nothing takes the values the profile stage would keep for settle.
    unsettled = ActivationStage(ProfileStage(), defs, lambda: NOW, keep_decoded=0)
    base, base_table, _ = best(repeats, lambda: run(records, profile.decide, None))
    traits, _, _ = best(repeats, lambda: run(records, unsettled.decide, None))
    full, table, outs = best(repeats, lambda: run(records, act.decide, act.settle))
    size = lambda t: sum(len(v) for v in t.values()) / max(1, len(t))  # noqa: E731
    return {
        "events": n, "profile_us": round(base / n * 1e6, 2), "traits_us": round((traits - base) / n * 1e6, 2),
        "settle_us": round((full - traits) / n * 1e6, 2), "total_us": round(full / n * 1e6, 2),
        "records_out_per_event": round(outs / n, 3), "value_bytes_before": round(size(base_table)), "value_bytes_after": round(size(table)),
        "traits": len(defs.traits), "audiences": len(defs.audiences),
    }


def measure_wiring(records: list[tuple[str, bytes]], defs: Definitions, repeats: int, bundle: int = 17) -> dict[str, Any]:
    """us per settled key of ``Activation.settle`` around a recorded stage, in bundles of ``bundle``
    keys (the bench's ~17 events per profile-events record); us per value of ``Rescan.tick``."""
    from prometheus_client import CollectorRegistry

    act = ActivationStage(ProfileStage(), defs, lambda: NOW)
    recorded: list[tuple[bytes, Any]] = []

    def record(key: str, before: bytes | None, after: bytes) -> Any:
        new, outs = act.settle(key, before, after)
        recorded.append((b"%d" % len(recorded), (new, outs)))
        return new, outs

    _, table, _ = run(records, act.decide, record)
    replay = dict(recorded)

    class Recorded:
        def settle(self, key: str, before: bytes | None, after: bytes, at_ms: int | None = None) -> Any:
            return replay[key.encode()]

    wiring = Activation(defs, CollectorRegistry())
    wiring.stage = Recorded()  # type: ignore[assignment]
    keys = [k for k, _ in recorded]

    def settle_all() -> float:
        staged = [{k: (b"", None) for k in keys[i:i + bundle]} for i in range(0, len(keys), bundle)]
        t0 = time.process_time()
        for one in staged:
            wiring.settle(one, lambda k: None, lambda topic, k, v: None)
        return time.process_time() - t0

    values = list(table.values())
    listed = [str(i).encode() for i in range(len(values))]
    get = dict(zip(listed, values, strict=True)).get

    def rescan_all() -> float:
        scan = Rescan(per_tick=len(listed), max_due=len(listed))
        t0 = time.process_time()
        scan.tick(lambda: listed, get, NOW)
        return time.process_time() - t0

    return {"wiring_us_per_key": round(min(settle_all() for _ in range(repeats * 3)) / len(keys) * 1e6, 2),
            "rescan_us_per_value": round(min(rescan_all() for _ in range(repeats * 3)) / len(values) * 1e6, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--definitions", default="docs/activation.example.toml")
    args = p.parse_args()
    records = stream(args.events)
    result = {"with_definitions": measure(records, load(args.definitions), args.repeats),
              "without_definitions": measure(records, Definitions(), args.repeats)}
    for name, defs in (("with_definitions", load(args.definitions)), ("without_definitions", Definitions())):
        result[name].update(measure_wiring(records, defs, args.repeats))
    for name, r in result.items():
        print(f"{name}: profile {r['profile_us']} us/event, + traits {r['traits_us']}, + settle {r['settle_us']}"
              f" = {r['total_us']} us/event; {r['records_out_per_event']} records out/event; value {r['value_bytes_before']} -> {r['value_bytes_after']} B;"
              f" wiring {r['wiring_us_per_key']} us/settled key, timer walk {r['rescan_us_per_value']} us/value")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
