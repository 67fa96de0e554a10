"""CPU and state size of the live forecaster per key (one fixed configuration, pure Python).

Usage: .venv/bin/python touchpoint_tools/bench/forecast_cost.py

Feeds a seeded weekly-seasonal count series of 5-min buckets (the stage's default bucket) for
three weeks through :class:`streams.demand.foresight.Foresight` the way the demand stage does
(one ``feed`` call per closed bucket, the state a JSON-safe dict as the table holds it), then
times: the amortised cost per 5-min bucket, ``Forecaster.learn_one`` per hourly step, a 48-h
forecast, the page's view, and the state's size (orjson bytes) with and without the page history.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.demand.forecast import Forecaster  # noqa: E402
from streams.demand.foresight import Foresight, ForesightConfig  # noqa: E402
from streams.demand.stage import DemandStage, StageConfig  # noqa: E402
from touchpoint_tools.simulate.sampling import poisson  # noqa: E402

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
FIVE_MIN = 300_000


def series(weeks: int, per_hour: float = 120.0) -> list[tuple[int, int]]:
    rng = random.Random(7)
    out = []
    for b in range(weeks * 7 * 288):
        hour, day = (b // 12) % 24, (b // 288) % 7
        mean = per_hour / 12 * (1 + 0.8 * math.sin((hour - 6) / 24 * 2 * math.pi)) * (0.6 if day >= 5 else 1.0)
        out.append((T0 + b * FIVE_MIN, poisson(rng, mean)))
    return out


def best_of(fn, repeat: int = 5) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.process_time()
        n = fn()
        best = min(best, (time.process_time() - t) / n)
    return best


def stage_cost(forecasts: bool, keys: int = 20, weeks: int = 2) -> float:
    """CPU seconds of DemandStage.handle per closed bucket per series (no Kafka: dict tables),
    over the second of ``weeks`` weeks of 5-min buckets of ``keys`` series."""
    stage = DemandStage(StageConfig(bucket_s=300, lateness_s=600, timezone="UTC", worker="bench"), {}, {})
    if not forecasts:
        stage.foresight.feed_many = lambda state, items: state  # type: ignore[method-assign]
        stage.foresight.alert_forecast = lambda state, record: None  # type: ignore[method-assign]
    pts = series(weeks, per_hour=240.0)
    records = [orjson.dumps({"k": f"category:c{k}", "m": "orders", "b": t, "n": v, "c": [[0, v, i]]})
               for i, (t, v) in enumerate(pts) for k in range(keys)]
    half = len(records) // 2
    for r in records[:half]:
        stage.handle(0, r)
    t = time.process_time()
    for r in records[half:]:
        stage.handle(0, r)
    return (time.process_time() - t) / (len(records) - half)


def main() -> int:
    fs = Foresight(ForesightConfig(bucket_s=300))
    pts = series(3)
    warm, timed = pts[: 2 * 7 * 288], pts[2 * 7 * 288:]
    state = None
    for t, v in warm:
        state = fs.feed(state, t, v, float(v))

    def feed_all() -> int:
        st = state
        for t, v in timed:
            st = fs.feed(st, t, v, float(v))
        return len(timed)

    per_bucket = best_of(feed_all, 3)
    model = fs.model(state)
    assert model is not None
    snap = model.snapshot()
    hourly = [(T0 + i * 3_600_000, float(sum(v for _, v in pts[i * 12:(i + 1) * 12]))) for i in range(len(pts) // 12)]

    def learn() -> int:
        f = Forecaster.from_snapshot(snap, fs.config.forecaster_config())
        for t, v in hourly[-168:]:
            f.learn_one(t + 10 ** 9, v)
        return 168

    def forecast48() -> int:
        for _ in range(20):
            model.forecast(48)
        return 20

    def restore() -> int:
        for _ in range(20):
            Forecaster.from_snapshot(snap, fs.config.forecaster_config()).snapshot()
        return 20

    def view() -> int:
        for _ in range(10):
            fs.view(state, 48)
        return 10

    rows = [
        ("Foresight.feed per 5-min bucket (amortised, as the stage calls it)", per_bucket * 1e6, "us"),
        ("Forecaster.learn_one per hourly step", best_of(learn) * 1e6, "us"),
        ("restore + snapshot of the model (once per completed hour)", best_of(restore) * 1e6, "us"),
        ("forecast(48)", best_of(forecast48) * 1e6, "us"),
        ("page view (history + 48-h forecast), one key", best_of(view) * 1e6, "us"),
        ("state per key and measure, orjson, with 7 days of page history", len(orjson.dumps(state)), "bytes"),
        ("  of which the model (Forecaster.snapshot)", len(orjson.dumps(snap)), "bytes"),
    ]
    with_fc, without_fc = stage_cost(True), stage_cost(False)
    rows += [
        ("demand stage per closed 5-min bucket per series, with forecasts", with_fc * 1e6, "us"),
        ("  the same stage with the forecaster switched off", without_fc * 1e6, "us"),
    ]
    for name, value, unit in rows:
        print(f"{name:70s} {value:10.1f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
