"""Scenario benchmark of demand-shift alerts: detection, delay, lifecycle and false alerts.

Seeded, pure (no Kafka): each set is 3 volumes (4, 40, 400 orders per hour on average) x (2 keys
of each of 6 shift kinds + 4 controls), four weeks of hourly history and a two-week evaluation
window (``touchpoint_tools/simulate/demand_scenarios.py`` says how the series and shifts are drawn). Every
key runs through one DemandMonitor configured exactly as the live stage configures the orders
measure with hourly buckets (``StageConfig(bucket_s=3600)``: detector defaults, NEW_NORMAL after
three days held, volume rule 12 orders).

    python touchpoint_tools/bench/demand_scenarios.py                 # sets 1-5 (the development sets)
    python touchpoint_tools/bench/demand_scenarios.py --seeds 101-105 # another draw with the same rules
    python touchpoint_tools/bench/demand_scenarios.py --json          # one JSON line of the totals last
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.demand.lifecycle import DemandMonitor  # noqa: E402
from streams.demand.stage import StageConfig  # noqa: E402
from streams.settings import Settings  # noqa: E402
from touchpoint_tools.simulate.demand_scenarios import KINDS, VOLUMES, evaluate, make_set, run_set, summarise  # noqa: E402


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _row(name: str, s: dict) -> str:
    med = "-" if s["median_delay_h"] is None else f"{s['median_delay_h']:g}"
    p90 = "-" if s["p90_delay_h"] is None else f"{s['p90_delay_h']:g}"
    return (f"| {name} | {s['shifts']} | {100 * s['detected']:.0f} % | {med} | {p90} | "
            f"{100 * s['lifecycle_right']:.0f} % | {s['false_opens']} | {s['false_per_100_key_days']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1-5", help="scenario sets to draw, e.g. 1-5 or 7,9 (default 1-5)")
    p.add_argument("--json", action="store_true", help="print the totals as one JSON line at the end")
    p.add_argument("--verbose", action="store_true", help="one line per shift")
    args = p.parse_args(argv)
    try:
        seeds = _seeds(args.seeds)
    except ValueError:
        print(f"demand_scenarios: --seeds {args.seeds!r}: expected numbers or ranges such as 1-5", file=sys.stderr)
        return 2
    cfg = StageConfig(bucket_s=3600, lateness_s=3600, timezone=Settings().demand_timezone, worker="bench")
    det_cfg, lc_cfg = cfg.detector_config(), cfg.lifecycle_config("orders")
    started = time.process_time()
    outcomes, false_opens, key_days = [], 0, 0.0
    for seed in seeds:
        series = make_set(seed)
        run_set(series, lambda key: DemandMonitor(key, "product", det_cfg, lc_cfg, "orders"))
        o, f, d = evaluate(series)
        outcomes += o
        false_opens += f
        key_days += d
    cpu = time.process_time() - started
    total = summarise(outcomes, false_opens, key_days)
    print(f"scenario sets {args.seeds} ({len(seeds)} x {len(outcomes) // max(1, len(seeds))} shifts, "
          f"{key_days:.0f} key-days evaluated), hourly buckets, {cpu:.1f} s CPU\n")
    print("| shifts | n | detected | median delay (h = buckets) | p90 delay | lifecycle right | false OPENs | per 100 key-days |")
    print("|---|---|---|---|---|---|---|---|")
    for volume in VOLUMES:
        sub = [o for o in outcomes if o.volume == volume]
        # False OPENs are per key: count them per volume from the key names.
        print(_row(f"volume {volume}", summarise(sub, 0, 0)).rsplit("|", 3)[0] + "| | |")
    for kind in KINDS:
        print(_row(kind, summarise([o for o in outcomes if o.kind == kind], 0, 0)).rsplit("|", 3)[0] + "| | |")
    print(_row("**all**", total))
    if args.verbose:
        for o in outcomes:
            print(f"  {o.key:40s} detected={o.detected!s:5} delay={o.delay_h} right={o.lifecycle_right!s:5} ends={o.ends}")
    if args.json:
        print(json.dumps({"seeds": args.seeds, "cpu_s": round(cpu, 2), **total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
