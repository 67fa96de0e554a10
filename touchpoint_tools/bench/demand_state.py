"""Bytes per key of the demand stage's table, and how many keys a long tail keeps full or pooled.

No Kafka: the real :class:`DemandStage` runs on plain dicts.

1. **Bytes per key.** A sample of keys spanning the volume range goes through ``DemandStage`` for
   ``--sample-days`` (default 8: more than a week, so every time-of-week slot holds a learned
   value) at the production bucket size; the serialized table value (``orjson.dumps``, what the
   JSON changelog stores) is measured for full keys (``mon`` = DemandMonitor snapshot) and pooled
   keys (volume EWMA only).
2. **Full vs pooled.** ``--keys`` keys (default 10,000) with Zipf(``--zipf``) volumes summing to
   ``--events-per-hour``, each with a daily cycle, Poisson counts per bucket; the stage's own
   pooling rule (EWMA over ``pool_window_s``, promote at ``pool_floor``/h, release below
   ``pool_release`` x floor) runs over ``--days`` to classify every key.

Usage::

    .venv/bin/python touchpoint_tools/bench/demand_state.py [--keys 10000] [--events-per-hour 50000] [--zipf 1.0]
        [--bucket-s 300] [--days 3] [--sample-days 8]

3. **Close cost** (``--close-cost``). ``--close-series`` monitored series (default 2,000, no
   pooling) on one partition, one count each per bucket, for ``--close-buckets`` buckets at
   ``--bucket-s``; the wall time of every record that closed a bucket is the close cost (all the
   partition's series fed and snapshotted, on the worker's event loop). Runs: with the stage's
   live cache, the close in one synchronous block (``process``, before) and in slices that hand
   the loop back (``process_sliced``, what the agent runs), then sliced with the worker's GC
   policy (gc.freeze() after every close, streams/demand/gcpolicy.py); ``--restore`` adds a
   first run restoring every monitor and forecaster from its snapshot at each close
   (``live_cache=0``, the behaviour before live objects were kept). The records are fed on an
   event loop beside a task that measures the longest time the loop went without running it
   while a close was in progress (the "longest loop block"). The first closes (monitors
   created) are left out; closes that complete a forecast step (the hour) are reported apart.

    .venv/bin/python -m touchpoint_tools.bench.demand_state --close-cost [--close-series 2000] [--close-buckets 36] [--restore] [--no-gc]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.demand.gcpolicy import CloseGc  # noqa: E402
from streams.demand.stage import DemandStage, StageConfig  # noqa: E402
from touchpoint_tools.simulate.sampling import poisson  # noqa: E402

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday


def rates(keys: int, per_hour: float, zipf: float) -> list[float]:
    """Mean events per hour of each key (rank 1 first)."""
    weights = [1.0 / (i ** zipf) for i in range(1, keys + 1)]
    total = sum(weights)
    return [per_hour * w / total for w in weights]


def shape(ts_ms: int) -> float:
    """Daily cycle with mean 1: quiet nights, busy evenings."""
    h = (ts_ms // 3_600_000) % 24
    return 1.0 + 0.6 * math.sin((h - 10) / 24 * 2 * math.pi)


def classify(cfg: StageConfig, per_hour: list[float], days: float, seed: int) -> tuple[int, int]:
    """(full, pooled) keys after ``days`` under the stage's pooling rule (no alerts pin keys here)."""
    rng = random.Random(seed)
    n_buckets = int(days * 86400 // cfg.bucket_s)
    floor, release, alpha, min_b = cfg.floor_per_bucket(), cfg.floor_per_bucket() * cfg.pool_release, cfg.pool_alpha, cfg.pool_min_buckets
    shapes = [shape(T0 + b * cfg.size_ms) for b in range(24 * 3600 // cfg.bucket_s or 1)]
    full = 0
    for r in per_hour:
        lam = r * cfg.bucket_s / 3600.0
        level, seen, is_full = 0.0, 0, False
        for b in range(n_buckets):
            c = poisson(rng, lam * shapes[b % len(shapes)])
            seen += 1
            level += max(alpha, 1.0 / seen) * (c - level)
            if not is_full and level >= floor and seen >= min_b:
                is_full = True
            elif is_full and level < release:
                is_full = False
        full += is_full
    return full, len(per_hour) - full


def sample_bytes(cfg: StageConfig, per_hour: list[float], days: float, seed: int) -> dict[str, list[int]]:
    """Serialized table value sizes of a sample of keys run through the real stage."""
    rng = random.Random(seed)
    n = len(per_hour)
    ranks = sorted({0, 1, 3, 10, 30, 100, 300, 1000, n // 4, n // 2, (3 * n) // 4, n - 1} & set(range(n)))
    sample = {f"product:rank{r + 1}": per_hour[r] for r in ranks}
    stage = DemandStage(cfg, {}, {})
    n_buckets = int(days * 86400 // cfg.bucket_s)
    for b in range(n_buckets + 3):
        ts = T0 + b * cfg.size_ms
        # A busy key on the partition keeps the watermark moving even when the sample is silent.
        stage.handle(0, orjson.dumps({"k": "channel:web", "b": ts, "n": 1000, "p": 0, "o": b}))
        for key, r in sample.items():
            c = poisson(rng, r * cfg.bucket_s / 3600.0 * shape(ts))
            if c:
                stage.handle(0, orjson.dumps({"k": key, "b": ts, "n": c, "p": 0, "o": b}))
    out: dict[str, list[int]] = {"full": [], "pooled": []}
    for key in sample:
        entry = stage.state.get(key)
        if entry is not None:
            out["pooled" if entry["mon"] is None else "full"].append(len(orjson.dumps(entry)))
    return out


def close_cost(series: int, n_buckets: int, bucket_s: int, live: bool, seed: int, sliced: bool = False,
               freeze: bool = False) -> dict[str, float]:
    """ms per close (mean over closes, and over the closes completing a forecast step), per
    series, and the longest single block of the event loop while a close ran."""
    cfg = StageConfig(bucket_s=bucket_s, lateness_s=bucket_s, pool_floor=0.0)
    stage = DemandStage(cfg, {}, {}, live_cache=series * 2 if live else 0)
    rng = random.Random(seed)
    plain: list[float] = []
    step: list[float] = []
    step_ms = stage.foresight.config.step * 1000
    gc_ms = [0.0, 0.0]  # time in full (generation 2) collections, and when the current one started

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_ms[1] = time.perf_counter()
        elif info["generation"] == 2:
            gc_ms[0] += (time.perf_counter() - gc_ms[1]) * 1000

    gc.collect()
    gc.callbacks.append(on_gc)
    try:
        block_ms = asyncio.run(_close_loop(stage, cfg, series, n_buckets, rng, plain, step, step_ms, sliced, freeze))
    finally:
        gc.callbacks.remove(on_gc)
        if freeze:
            gc.unfreeze()
    every = plain + step
    return {"closes": len(every), "ms_per_close": statistics.mean(every),
            "ms_per_close_plain": statistics.mean(plain) if plain else 0.0,
            "ms_per_close_step": statistics.mean(step) if step else 0.0,
            "max_ms": max(every), "us_per_series": statistics.mean(every) / series * 1000,
            "full_gc_ms_per_bucket": gc_ms[0] / n_buckets, "longest_block_ms": block_ms}


async def _close_loop(stage: DemandStage, cfg: StageConfig, series: int, n_buckets: int, rng: random.Random,
                      plain: list[float], step: list[float], step_ms: int, sliced: bool, freeze: bool) -> float:
    """Feed the records on an event loop (handing it back after each record, as the agent's
    stream does) beside a task that measures how long the loop went without running it; returns
    the longest such gap that overlapped a close (ms). ``sliced``: the agent's process_sliced,
    else the synchronous process. ``freeze``: the worker's GC policy after every close
    (streams/demand/gcpolicy.py, wired in streams/demand/agent.py)."""
    mark = {"closing": False, "seq": 0, "longest": 0.0, "stop": False}
    policy = CloseGc()
    if freeze:
        stage.on_slice = policy.after_slice

    async def ticker() -> None:
        while not mark["stop"]:
            t, was, seq = time.perf_counter(), mark["closing"], mark["seq"]
            await asyncio.sleep(0)
            if was or mark["closing"] or mark["seq"] != seq:
                mark["longest"] = max(mark["longest"], time.perf_counter() - t)

    task = asyncio.ensure_future(ticker())
    for b in range(n_buckets):
        ts = T0 + b * cfg.size_ms
        for i in range(series):
            value = orjson.dumps({"k": f"product:s{i}", "m": "orders", "b": ts, "n": poisson(rng, 10.0), "c": [[0, 1, b]]})
            await asyncio.sleep(0)
            counted = i == 0 and b > 2  # b <= 2: the first close creates the monitors
            mark["closing"], mark["seq"] = counted, mark["seq"] + counted
            t = time.perf_counter()
            if sliced:
                out = await stage.process_sliced(0, value)
                stage.commit(out)
            else:
                out = stage.handle(0, value)
            dt = (time.perf_counter() - t) * 1000
            mark["closing"] = False
            if out.closed_buckets and counted:
                closed = stage.clocks["0"]["closed"]  # the close fed the bucket ending here
                (step if closed % step_ms == 0 else plain).append(dt)
            if freeze and out.closed_buckets:
                policy.after_close()
    mark["stop"] = True
    await task
    return float(mark["longest"]) * 1000


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--events-per-hour", type=float, default=50_000.0)
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--bucket-s", type=int, default=300)
    ap.add_argument("--days", type=float, default=3.0, help="days of the pooling simulation")
    ap.add_argument("--sample-days", type=float, default=8.0, help="days the byte-size sample runs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--close-cost", action="store_true", help="measure the cost of a bucket close instead")
    ap.add_argument("--close-series", type=int, default=2000)
    ap.add_argument("--close-buckets", type=int, default=36)
    ap.add_argument("--restore", action="store_true", help="with --close-cost: also restore every monitor at each close (before the live cache)")
    ap.add_argument("--no-gc", action="store_true", help="with --close-cost: cyclic GC off (the stage's own work alone)")
    args = ap.parse_args(argv[1:])
    if args.close_cost:
        if args.no_gc:
            gc.disable()
        res = {}
        runs = [("restore_every_close", False, False, False), ("live_cache", True, False, False),
                ("live_cache_sliced", True, True, False), ("live_cache_sliced_frozen", True, True, True)]
        for name, live, sliced, freeze in runs:
            if (name == "restore_every_close" and not args.restore) or (freeze and args.no_gc):
                continue
            r = close_cost(args.close_series, args.close_buckets, args.bucket_s, live, args.seed, sliced, freeze)
            res[name] = {k: round(v, 3) for k, v in r.items()}
            print(f"{name}: {args.close_series} series, {args.bucket_s} s buckets, {r['closes']} closes: "
                  f"{r['ms_per_close']:.1f} ms per close (within an hour {r['ms_per_close_plain']:.1f}, "
                  f"completing a forecast step {r['ms_per_close_step']:.1f}, max {r['max_ms']:.1f}), "
                  f"{r['us_per_series']:.0f} us per series; full GC passes {r['full_gc_ms_per_bucket']:.0f} ms per bucket; "
                  f"longest loop block during a close {r['longest_block_ms']:.1f} ms")
        print(json.dumps({"series": args.close_series, "bucket_s": args.bucket_s, "gc": not args.no_gc, **res}))
        return 0
    cfg = StageConfig(bucket_s=args.bucket_s, lateness_s=max(args.bucket_s, 600))
    per_hour = rates(args.keys, args.events_per_hour, args.zipf)
    started = time.perf_counter()
    sizes = sample_bytes(cfg, per_hour, args.sample_days, args.seed)
    full, pooled = classify(cfg, per_hour, args.days, args.seed)
    full_b = statistics.mean(sizes["full"]) if sizes["full"] else 0.0
    pooled_b = statistics.mean(sizes["pooled"]) if sizes["pooled"] else 0.0
    total = full * full_b + pooled * pooled_b
    all_full = args.keys * full_b
    print(f"bucket {cfg.bucket_s} s, pool floor {cfg.pool_floor}/h (release below {cfg.pool_floor * cfg.pool_release}/h), "
          f"EWMA window {cfg.pool_window_s} s")
    print(f"{args.keys} keys, Zipf({args.zipf}) volumes summing to {args.events_per_hour:.0f} events/h: "
          f"busiest {per_hour[0]:.0f}/h, median {statistics.median(per_hour):.2f}/h, quietest {per_hour[-1]:.2f}/h")
    print(f"bytes per key (serialized table value): full {full_b:.0f} (sample {sorted(sizes['full'])}), "
          f"pooled {pooled_b:.0f} (sample {sorted(sizes['pooled'])})")
    print(f"full keys {full}, pooled keys {pooled}: total {total / 1e6:.1f} MB "
          f"(all full would be {all_full / 1e6:.1f} MB)  [{time.perf_counter() - started:.1f} s]")
    print(json.dumps({"keys": args.keys, "bucket_s": cfg.bucket_s, "full": full, "pooled": pooled,
                      "bytes_full": round(full_b), "bytes_pooled": round(pooled_b), "total_bytes": round(total),
                      "all_full_bytes": round(all_full)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
