"""Units come in baskets: the count noise of a lumpy sum (dispersion index D, stage_config.basket_dispersion)."""

from __future__ import annotations

import random

import orjson

from streams.demand.detector import DemandDetector, DetectorConfig
from streams.demand.stage import DemandStage, StageConfig, series_key
from streams.observability.metrics import Metrics
from touchpoint_tools.simulate.sampling import poisson

H = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
BASKET = 4.5  # mean units per order of the baskets below: 1 + Poisson(3.5)


def basket_hours(rng: random.Random, hours: int, rate: object) -> list[tuple[int, int]]:
    """(orders, units) per hour: Poisson orders (``rate`` per hour, or a function of the hour)
    of 1 + Poisson(3.5) units each."""
    out = []
    for h in range(hours):
        lam = rate(h) if callable(rate) else rate  # type: ignore[operator]
        n = poisson(rng, lam, normal_above=None)
        out.append((n, sum(1 + poisson(rng, 3.5, normal_above=None) for _ in range(n))))
    return out


def surge_opens(disp: float, keys: int = 12, days: int = 8) -> int:
    """Surge OPENs after the two-day warm-up on flat sparse lumpy keys (0.4 orders/h): all false."""
    opens = 0
    for k in range(keys):
        det = DemandDetector(DetectorConfig(bucket_s=3600))
        det.disp = disp
        for i, (_, units) in enumerate(basket_hours(random.Random(k), days * 24, 0.4)):
            d = det.update(T0 + i * H, units)
            opens += d.opened and d.direction > 0 and i >= 48
    return opens


def test_a_sparse_lumpy_sum_judged_as_baskets_opens_no_false_surge() -> None:
    # Fails on the code before D: the detector took every unit for an independent event
    # (var = mu + a mu^2 with ``a`` learned through the clipping: ~0.6 here where the sums have ~4).
    assert surge_opens(disp=BASKET) <= 3  # 25 -> 3 (0 with a negative binomial of the same variance)
    assert surge_opens(disp=1.0) >= 10  # the same keys as counts of events: the demo's false alerts


def test_a_real_surge_of_baskets_still_opens_within_a_few_buckets() -> None:
    onset = 5 * 24
    rows = basket_hours(random.Random(7), onset + 24, lambda h: 2.0 if h < onset else 8.0)
    det = DemandDetector(DetectorConfig(bucket_s=3600))
    det.disp = BASKET
    opened = [i for i, (_, units) in enumerate(rows) if det.update(T0 + i * H, units).opened]
    assert opened and onset <= opened[0] <= onset + 3, opened


def test_the_dispersion_survives_a_snapshot_and_old_snapshots_load_with_none() -> None:
    det = DemandDetector(DetectorConfig(bucket_s=3600))
    det.disp = 3.25
    det.update(T0, 4)
    assert DemandDetector.from_snapshot(det.snapshot(), det.config).disp == 3.25
    plain = DemandDetector(DetectorConfig(bucket_s=3600))
    plain.update(T0, 4)
    assert "disp" not in plain.snapshot()  # counts of events keep the old snapshot
    assert DemandDetector.from_snapshot(plain.snapshot(), plain.config).disp == 1.0


def _stage_run(measures: tuple[str, ...], days: int = 3) -> DemandStage:
    cfg = StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", worker="test:1", measures=measures)
    stage = DemandStage(cfg, {}, {}, Metrics())
    for h, (orders, units) in enumerate(basket_hours(random.Random(3), days * 24, 6.0)):
        for measure, n in (("orders", orders), ("units", units)):
            if n:
                stage.handle(0, orjson.dumps({"k": "category:masks", "m": measure, "b": T0 + h * H, "n": n,
                                              "c": [[0, n, h]]}))
    return stage


def test_the_stage_gives_units_its_units_per_order_and_orders_none() -> None:
    stage = _stage_run(("orders", "units"))
    units = stage.state[series_key("category:masks", "units")]
    orders = stage.state[series_key("category:masks", "orders")]
    assert units["mon"] is not None and orders["mon"] is not None
    # The units' volume EWMA over the orders' (as of the close before the last): ~4.5 units an order.
    assert abs(units["mon"]["detector"]["disp"] - BASKET) < 0.8, units["mon"]["detector"]["disp"]
    assert "disp" not in orders["mon"]["detector"]
    # Orders not watched: no units-per-order information, units are judged as counts.
    alone = _stage_run(("units",)).state[series_key("category:masks", "units")]
    assert "disp" not in alone["mon"]["detector"]
