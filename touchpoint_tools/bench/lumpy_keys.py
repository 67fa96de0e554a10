"""Probe: the count noise model on sparse lumpy sums (units of a few orders an hour, baskets of several).

Usage::

    python -m touchpoint_tools.bench.lumpy_keys                       # 40 keys x 8 days, 0.4 orders/h x ~4.5 units
    python -m touchpoint_tools.bench.lumpy_keys --rate 1 --basket 2 --keys 20

Each key is flat (no daily profile, no shift): Poisson orders at ``--rate`` per hour, each of
``1 + Poisson(basket - 1)`` units; the hourly units sums go through the detector as
``touchpoint detect`` runs it. Printed: the sums' true overdispersion ``a`` in the detector's model
``var = mu + a mu^2`` (compound Poisson: ``var = mu E[q^2] / E[q]``), the ``a`` the day and level
tiers learned (mean over keys), and the surge OPENs after the two-day warm-up, every one false.
docs/demand.md, "Session 12", has the figures and what was tried with them.
"""

from __future__ import annotations

import argparse
import random
import sys

from streams.demand.detector import DemandDetector, DetectorConfig
from touchpoint_tools.simulate.sampling import poisson

HOUR_MS = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday


def true_overdispersion(rate: float, basket: float) -> float:
    """``a`` of hourly sums of ``1 + Poisson(basket - 1)`` units over Poisson(``rate``) orders.

    >>> round(true_overdispersion(0.4, 4.5), 2)  # mu 1.8 units an hour, E[q^2]/E[q] = 5.28
    2.38
    """
    mu, extra = rate * basket, basket - 1.0
    q2_over_q = (extra + basket * basket) / basket  # E[q^2] / E[q]: Var(q) = basket - 1
    return (mu * q2_over_q - mu) / (mu * mu)


def run(keys: int, days: int, rate: float, basket: float, seed: int = 0) -> dict[str, float]:
    """The learned overdispersion per tier (mean over keys) and the false surge OPENs after day 2."""
    opens, learned = 0, {"day": 0.0, "level": 0.0}
    for k in range(keys):
        rng = random.Random(seed * 100_003 + k)
        det = DemandDetector(DetectorConfig(bucket_s=3600))
        for i in range(days * 24):
            n = poisson(rng, rate, normal_above=None)
            units = sum(1 + poisson(rng, basket - 1.0, normal_above=None) for _ in range(n))
            d = det.update(T0 + i * HOUR_MS, units)
            opens += d.opened and d.direction > 0 and i >= 48
        for tier in learned:
            num, den = det.od[tier]
            learned[tier] += max(num, 0.0) / den / keys if den > 0 else 0.0
    return {"true_a": true_overdispersion(rate, basket), "day_a": learned["day"], "level_a": learned["level"],
            "false_opens": float(opens)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=40)
    p.add_argument("--days", type=int, default=8)
    p.add_argument("--rate", type=float, default=0.4, help="orders per hour")
    p.add_argument("--basket", type=float, default=4.5, help="mean units per order (>= 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.keys < 1 or args.days < 3 or args.rate <= 0 or args.basket < 1:
        print("lumpy_keys: need --keys >= 1, --days >= 3, --rate > 0, --basket >= 1", file=sys.stderr)
        return 2
    r = run(args.keys, args.days, args.rate, args.basket, args.seed)
    print(f"{args.keys} keys x {args.days} days, {args.rate:g} orders/h x {args.basket:g} units: "
          f"true a {r['true_a']:.2f}, learned a day {r['day_a']:.2f} / level {r['level_a']:.2f}, "
          f"surge OPENs after day 2 (all false) {r['false_opens']:.0f} "
          f"({100 * r['false_opens'] / (args.keys * (args.days - 2)):.1f} per 100 key-days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
