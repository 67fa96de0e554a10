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
    python touchpoint_tools/bench/demand_scenarios.py --crisis 1-4    # the demo's crisis traffic, offline, per seed
    python touchpoint_tools/bench/demand_scenarios.py --crisis 1-4 --verbose  # + every real alert and (shift, key) pair

``--crisis`` replays ``touchpoint demo``'s traffic (40,000 events, crisis from day 4) through the
demand stage as the demo configures it (hourly buckets, every dimension and measure) and checks
every alert against the simulator's ground truth (``touchpoint_tools/simulate/crisis_replay.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.demand.monitor import DemandMonitor  # noqa: E402
from streams.demand.stage import StageConfig  # noqa: E402
from streams.settings import Settings  # noqa: E402
from touchpoint_tools.simulate.demand_scenarios import KINDS, VOLUMES, evaluate, learning_opens, make_set, run_set, summarise  # noqa: E402


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _grain(bucket_s: int) -> str:
    return "hourly" if bucket_s == 3600 else f"{bucket_s // 60}-minute" if bucket_s % 60 == 0 else f"{bucket_s}-second"


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
    p.add_argument("--crisis", metavar="SEEDS", help="instead: replay the demo's crisis traffic with these seeds")
    p.add_argument("--later-h", type=int, default=0,
                   help="with --crisis: end the replayed week this many hours later (the demo's crisis starts at any hour)")
    p.add_argument("--bucket-s", type=int, default=3600,
                   help="the stage's bucket size; below an hour each hour's orders are spread at random over its buckets (default 3600)")
    args = p.parse_args(argv)
    if args.crisis:
        try:
            return crisis(_seeds(args.crisis), args.json, args.later_h, args.verbose)
        except ValueError:
            print(f"demand_scenarios: --crisis {args.crisis!r}: expected numbers or ranges such as 1-4", file=sys.stderr)
            return 2
    try:
        seeds = _seeds(args.seeds)
    except ValueError:
        print(f"demand_scenarios: --seeds {args.seeds!r}: expected numbers or ranges such as 1-5", file=sys.stderr)
        return 2
    if args.bucket_s <= 0 or 3600 % args.bucket_s:
        print(f"demand_scenarios: --bucket-s {args.bucket_s}: must divide an hour (300, 900, 3600, ...)", file=sys.stderr)
        return 2
    cfg = StageConfig(bucket_s=args.bucket_s, lateness_s=3600, timezone=Settings().demand_timezone, worker="bench")
    det_cfg, lc_cfg = cfg.detector_config(), cfg.lifecycle_config("orders")
    started = time.process_time()
    outcomes, false_opens, key_days = [], 0, 0.0
    learning = [0, 0.0]  # OPENs in the history weeks, key-days there
    for seed in seeds:
        series = make_set(seed)
        run_set(series, lambda key: DemandMonitor(key, "product", det_cfg, lc_cfg, "orders"), args.bucket_s, seed)
        o, f, d = evaluate(series)
        outcomes += o
        false_opens += f
        key_days += d
        n, kd = learning_opens(series)
        learning[0] += n
        learning[1] += kd
    cpu = time.process_time() - started
    total = summarise(outcomes, false_opens, key_days)
    print(f"scenario sets {args.seeds} ({len(seeds)} x {len(outcomes) // max(1, len(seeds))} shifts, "
          f"{key_days:.0f} key-days evaluated), {_grain(args.bucket_s)} buckets, {cpu:.1f} s CPU\n")
    print("| shifts | n | detected | median delay (h = buckets) | p90 delay | lifecycle right | false OPENs | per 100 key-days |")
    print("|---|---|---|---|---|---|---|---|")
    for volume in VOLUMES:
        sub = [o for o in outcomes if o.volume == volume]
        # False OPENs are per key: count them per volume from the key names.
        print(_row(f"volume {volume}", summarise(sub, 0, 0)).rsplit("|", 3)[0] + "| | |")
    for kind in KINDS:
        print(_row(kind, summarise([o for o in outcomes if o.kind == kind], 0, 0)).rsplit("|", 3)[0] + "| | |")
    print(_row("**all**", total))
    per_100 = 100.0 * learning[0] / max(learning[1], 1e-9)
    total["learning_false_opens"], total["learning_per_100_key_days"] = learning[0], per_100
    print(f"\nwhile the keys are learned (history weeks, day 3 on; no shift there): {learning[0]} false OPENs, "
          f"{per_100:.2f} per 100 key-days")
    if args.verbose:
        for o in outcomes:
            print(f"  {o.key:40s} detected={o.detected!s:5} delay={o.delay_h} right={o.lifecycle_right!s:5} ends={o.ends}")
    if args.json:
        print(json.dumps({"seeds": args.seeds, "cpu_s": round(cpu, 2), **total}))
    return 0


def crisis(seeds: list[int], as_json: bool, later_h: int = 0, verbose: bool = False) -> int:
    """The demo's crisis, replayed per seed: alerts on real shifts, alerts on series that did not
    shift, and the (injected shift, key) pairs with at least one real alert (``verbose``: each
    real alert and each pair, to compare two runs). ``later_h`` moves the run's clock (the demo
    ends it at the wall clock: its crisis starts at any hour of any weekday)."""
    from dataclasses import replace

    from streams.demand.dimensions import parse_dimensions
    from touchpoint_tools.simulate.crisis_replay import CrisisRun, check_alerts, ground_truth, replay, shift_keys, shift_lines

    settings = Settings().with_(demand_bucket_s=3600, demand_lateness_s=7200)
    cfg = replace(StageConfig.from_settings(settings), max_future_s=0)
    dims = parse_dimensions(settings.demand_dimensions)
    totals = {"alerts": 0, "matched": 0, "unmatched": 0, "shift_keys": 0}
    for seed in seeds:
        started = time.process_time()
        run = CrisisRun.ending_now(40_000, seed, 1_790_000_000_000 + later_h * 3_600_000)
        truth = ground_truth(run, dims, cfg.measures, settings.demand_currency)
        verdict = check_alerts(replay(run, cfg, dims), truth)
        pairs = shift_keys(verdict, truth)
        print(f"seed {seed}: {verdict.total} alerts, {len(verdict.matched)} on series the simulator shifted, "
              f"{len(verdict.unmatched)} on series it did not; {len(pairs)} (shift, key) pairs alerted "
              f"({time.process_time() - started:.0f} s CPU)")
        for line in shift_lines(verdict, run.scenario(), run.end_ms):
            print(f"  {line}")
        for story in verdict.unmatched:
            print(f"  not a real shift: {story.line()}")
        if verbose:
            for story in verdict.matched:
                print(f"  real: {story.line()}")
            for (label, key, direction), measures in pairs.items():
                print(f"  pair: {label} {key} {direction}: {' '.join(measures)}")
        totals["alerts"] += verdict.total
        totals["matched"] += len(verdict.matched)
        totals["unmatched"] += len(verdict.unmatched)
        totals["shift_keys"] += len(pairs)
    if as_json:
        print(json.dumps({"crisis_seeds": seeds, **totals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
