"""Probe: what holds a shift's published OPEN back, hour by hour (scenario benchmark, issue 15's delay).

Usage::

    python -m touchpoint_tools.bench.demand_delay --seeds 101-105            # late shifts (4-8 h)
    python -m touchpoint_tools.bench.demand_delay --seeds 1-5 --late 0-200   # every detected shift

Runs the scenario sets exactly as ``touchpoint_tools/bench/demand_scenarios.py`` does (one
DemandMonitor per key, the live stage's orders configuration, hourly buckets) and records, for
every bucket from a shift's onset to its published OPEN, the first condition that kept the OPEN
from being published (:func:`blocker`):

* ``not open``: no alert open (the detector's CUSUM / run-sum and the lifecycle's sustained-shift
  tests had not fired, or an alert had been dropped);
* ``level 20 %``: an alert open but its level (observed / frozen baseline since OPEN) less than 20 %
  away from the baseline;
* ``volume``: the excess in the alert's direction (lead-in included) below the volume rule;
* ``beyond largest``: the excess reaches the volume rule but not once the alert's largest single
  bucket is left out;
* ``other``: the noise clearance (units, revenue) or the baseline floor.

A shift's *cause* is the blocker at the last hour that would still have met the target (onset +
``--target`` buckets). Printed: counts per cause and per shift kind x volume, and the hours held
back per blocker over all the late shifts' buckets.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from streams.demand.detector import Decision
from streams.demand.lifecycle import AlertLifecycle
from streams.demand.monitor import DemandMonitor
from streams.demand.stage import StageConfig
from streams.settings import Settings
from touchpoint_tools.simulate.demand_scenarios import HOUR_MS, START_MS, VOLUMES, evaluate, make_set

CAUSES = ("not open", "level 20 %", "volume", "beyond largest", "other")


def blocker(lc: AlertLifecycle) -> str:
    """The first condition of the volume rule that keeps ``lc``'s open alert unpublished
    (``lc`` as left after observing a bucket), or ``"published"``.

    >>> from streams.demand.lifecycle_config import LifecycleConfig
    >>> lc = AlertLifecycle("k", config=LifecycleConfig(min_excess=12.0, judge="baseline"))
    >>> blocker(lc)
    'not open'
    >>> lc.alert_id, lc.direction, lc.buckets, lc.sx, lc.se, lc.top = "a", 1, 2, 20.0, 10.0, 9.0
    >>> blocker(lc)  # 10 of excess: below 12
    'volume'
    >>> lc.sx = 30.0; blocker(lc)  # 20 of excess, 11 without the largest bucket
    'beyond largest'
    >>> lc.sx, lc.se, lc.top = 117.0, 100.0, 3.0; blocker(lc)  # x1.17: not 20 % away
    'level 20 %'
    """
    if not lc.active:
        return "not open"
    if lc.published:
        return "published"
    cfg = lc.config
    ratio = lc.sx / lc.se if lc.se > 0 else 2.0
    moved_level = ratio >= 1.0 + cfg.slow_min_rel if lc.direction > 0 else ratio <= 1.0 / (1.0 + cfg.slow_min_rel)
    if not moved_level:
        return "level 20 %"
    px, pe, ptop, _, pn = lc.pre
    moved = (lc.sx + px - lc.se - pe) * lc.direction
    if moved < cfg.min_excess:
        return "volume"
    if cfg.min_excess > 0 and lc.buckets + pn > 1 and moved - max(lc.top, ptop, 0.0) < cfg.min_excess:
        return "beyond largest"
    return "other"


@dataclass
class Trace:
    """Per bucket of one key: the blocker after it, and the detector's view of it."""

    blockers: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


def run(seeds: list[int], volumes: tuple[str, ...] = tuple(VOLUMES)) -> list[tuple[Any, Any, Trace]]:
    """(key series, outcome, trace) for every shift of the sets."""
    cfg = StageConfig(bucket_s=3600, lateness_s=3600, timezone=Settings().demand_timezone, worker="bench")
    det_cfg, lc_cfg = cfg.detector_config(), cfg.lifecycle_config("orders")
    out = []
    for seed in seeds:
        series = make_set(seed, volumes=volumes)
        traces = {}
        for ks in series:
            mon = DemandMonitor(ks.key, "product", det_cfg, lc_cfg, "orders")
            tr = traces[ks.key] = Trace()
            for h, n in enumerate(ks.counts):
                d, records = mon.update(START_MS + h * HOUR_MS, n)
                ks.alerts.extend(r.to_dict() for r in records)
                tr.blockers.append("published" if any(r.state == "OPEN" for r in records) else blocker(mon.lifecycle))
                tr.decisions.append(d)
        outcomes, _, _ = evaluate(series)
        by_key = {ks.key: ks for ks in series}
        out += [(by_key[o.key], o, traces[o.key]) for o in outcomes]
    return out


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1-5")
    p.add_argument("--late", default="4-8", help="delays (hours) of the shifts to diagnose (default 4-8)")
    p.add_argument("--target", type=int, default=3, help="the delay target in buckets (default 3)")
    p.add_argument("--volumes", default=",".join(VOLUMES), help="volumes to draw (default low,medium,high)")
    p.add_argument("--verbose", action="store_true", help="one line per diagnosed shift")
    args = p.parse_args(argv)
    try:
        seeds = [s for part in args.seeds.split(",") for s in range(_range(part)[0], _range(part)[1] + 1)]
        lo, hi = _range(args.late)
        volumes = tuple(args.volumes.split(","))
        if not volumes or any(v not in VOLUMES for v in volumes):
            raise ValueError(args.volumes)
    except ValueError:
        print(f"demand_delay: bad --seeds {args.seeds!r}, --late {args.late!r} or --volumes {args.volumes!r}",
              file=sys.stderr)
        return 2
    rows = run(seeds, volumes)
    detected = [r for r in rows if r[1].delay_h is not None]
    late = [r for r in detected if lo <= r[1].delay_h <= hi]
    causes: Counter[str] = Counter()
    by_group: Counter[tuple[str, str, str]] = Counter()
    hours: Counter[str] = Counter()
    for ks, o, tr in late:
        onset = ks.shift.onset
        cause = tr.blockers[onset + args.target]
        causes[cause] += 1
        by_group[(o.kind, o.volume, cause)] += 1
        hours.update(tr.blockers[onset:onset + o.delay_h])
        if args.verbose:
            local = onset % 24  # hours count from local Monday 00:00
            path = " ".join(b.replace(" ", "_") for b in tr.blockers[onset:onset + o.delay_h + 1])
            print(f"  {ks.key:40s} onset {local:02d}:00 x{ks.shift.factor:.2f} delay {o.delay_h:3d} h  {path}")
    print(f"sets {args.seeds}: {len(rows)} shifts, {len(detected)} detected, {len(late)} published "
          f"{lo}-{hi} h after onset; the blocker at onset + {args.target} h:")
    print("| cause | shifts |\n|---|---|")
    for c in CAUSES + ("published",):
        if causes[c]:
            print(f"| {c} | {causes[c]} |")
    print("\nper kind and volume (cause: shifts):")
    for kind, volume in sorted({(k, v) for k, v, _ in by_group}):
        cells = ", ".join(f"{c} {by_group[(kind, volume, c)]}" for c in CAUSES if by_group[(kind, volume, c)])
        print(f"  {kind} {volume}: {cells}")
    # Publication's share: when would these shifts be out if an alert were published the bucket it
    # opens (no volume rule)? The first bucket from onset on with an alert open, published or not.
    bound = sorted(next((h - r[0].shift.onset for h in range(r[0].shift.onset, r[0].shift.onset + r[1].delay_h + 1)
                         if r[2].blockers[h] != "not open"), r[1].delay_h) for r in detected)
    within = sum(o.delay_h <= args.target for _, o, _ in detected)
    print(f"\nwithin {args.target} h: {within} of {len(detected)} detected (median needs {len(detected) // 2 + 1}); "
          f"published the bucket an alert opens: {sum(b <= args.target for b in bound)} "
          f"(median {median(bound) if bound else '-'} h)")
    night = sum(1 for r in late if r[2].blockers[r[0].shift.onset + args.target] == "not open"
                and not 6 <= r[0].shift.onset % 24 < 22)
    print(f"not open at onset + {args.target} h: {causes['not open']} shifts, {night} of them with onset at night (22-06 h)")
    print("\nhours held back (every bucket from onset to the OPEN), per blocker: "
          + ", ".join(f"{c} {hours[c]}" for c in CAUSES if hours[c]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
