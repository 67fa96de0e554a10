"""Micro-benchmark: nanoseconds per hot-path metric update (bound children, our registry).

    .venv/bin/python touchpoint_tools/bench/metrics_cost.py [--n 1000000]

Prints one line per operation and a JSON line last. Hot paths must stay well under 1000 ns.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable

from streams.observability.metrics import Metrics


def per_call_ns(fn: Callable[[], None], n: int) -> float:
    """Best of 5 timed loops of ``n`` calls, minus the cost of the empty loop."""
    def loop(f: Callable[[], None]) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            f()
        return (time.perf_counter_ns() - start) / n

    empty = min(loop(lambda: None) for _ in range(5))
    return max(0.0, min(loop(fn) for _ in range(5)) - empty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    m = Metrics()
    ops: dict[str, Callable[[], None]] = {
        "counter_inc (bound child)": m.applied.inc,
        "counter_inc (reason dict + child)": lambda: m.dead_by_reason[next(iter(m.dead_by_reason))].inc(),
        "histogram_observe (bound child, 16 buckets)": lambda: m.event_lag.observe(0.2),
        "histogram_observe (bound child, default buckets)": lambda: m.ingest_batch_seconds.observe(0.004),
        "gauge_set (bound child)": lambda: m.consumer_lag.labels("tp.touchpoints", "0").set(5),
        "counter_labels_then_inc (unbound, for contrast)": lambda: m.events.labels("applied").inc(),
    }
    bound = m.consumer_lag.labels("tp.touchpoints", "0")
    ops["gauge_set (bound child)"] = lambda: bound.set(5)
    # References: what the machine gives at all (a busy machine inflates everything alike).
    lock = threading.Lock()

    def locked() -> None:
        with lock:
            pass

    ops["reference: threading.Lock acquire+release"] = locked
    results = {}
    for name, fn in ops.items():
        ns = per_call_ns(fn, args.n)
        results[name] = round(ns, 1)
        print(f"{name:52s} {ns:8.1f} ns")
    # Per event when the stage counts a batch of 500 once (inc(500)) instead of once per event.
    batch = per_call_ns(lambda: m.applied.inc(500), args.n // 10) / 500
    results["counter_inc per event, batched by 500"] = round(batch, 2)
    print(f"{'counter_inc per event, batched by 500':52s} {batch:8.2f} ns")
    print(json.dumps({"ns_per_op": results, "n": args.n, "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
