"""Live monitors and forecasters kept between bucket closes: same results as restoring every close."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from streams.demand.forecast import Forecaster
from streams.demand.monitor import DemandMonitor
from streams.demand.stage import DemandStage, StageConfig
from streams.observability.metrics import Metrics
from touchpoint_tools.simulate.sampling import poisson

from .test_stage import new_stage, run, scenario

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
FIVE = StageConfig(bucket_s=300, lateness_s=600, timezone="UTC", worker="test:1")


def cold(cfg: StageConfig) -> DemandStage:
    """A stage that restores every monitor and forecaster from its snapshot (the old behaviour)."""
    return DemandStage(cfg, {}, {}, Metrics(), live_cache=0)


def five_minute(days: float = 3.0, seed: int = 5) -> list[tuple[int, bytes]]:
    """Three keys on two partitions, 5-min buckets, Poisson counts, a x4 surge on one key on day 2."""
    rng = random.Random(seed)
    out = []
    keys = (("category:masks", 0, 6.0), ("region:hubei", 0, 3.0), ("channel:web", 1, 9.0))
    for b in range(int(days * 288)):
        for key, p, lam in keys:
            lam_b = lam * (4 if key == "category:masks" and 400 <= b < 440 else 1)
            n = poisson(rng, lam_b)
            if n:
                out.append((p, orjson.dumps({"k": key, "m": "orders", "b": T0 + b * 300_000, "n": n, "c": [[p, n, b]]})))
    return out


def dump(stage: DemandStage) -> bytes:
    return orjson.dumps({"state": dict(stage.state), "clocks": dict(stage.clocks)}, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("cfg, records", [(None, "hourly"), (FIVE, "five")])
def test_results_identical_with_and_without_the_live_cache(cfg: StageConfig | None, records: str) -> None:
    recs = scenario() if records == "hourly" else five_minute()
    live = new_stage() if cfg is None else DemandStage(cfg, {}, {}, Metrics())
    ref = cold(live.config)
    alerts_live, alerts_ref = run(live, recs), run(ref, recs)
    assert alerts_live == alerts_ref
    assert dump(live) == dump(ref)
    if records == "hourly":
        assert any(a["state"] == "OPEN" for a in alerts_live)  # alerts and their forecasts were compared
    assert any(entry.get("fc", {}).get("m") for entry in live.state.values())  # forecasters learned steps


def test_an_uncommitted_outcome_never_leaks_the_advanced_monitor() -> None:
    """process() without commit (a failed alert send), then the same record again: the result
    is the one of a stage that restores from the table, not of a monitor fed the buckets twice."""
    recs = scenario()
    live, ref = new_stage(), cold(new_stage().config)
    dropped = 0
    alerts_live: list[dict[str, Any]] = []
    for i, (partition, value) in enumerate(recs):
        if i % 3 == 0:
            lost = live.process(partition, value)  # computed, never committed
            dropped += lost.closed_buckets > 0
        alerts_live += live.handle(partition, value).alerts
    alerts_ref = run(ref, recs)
    assert dropped > 20  # the dropped outcomes did advance monitors and forecasters
    assert alerts_live == alerts_ref and any(a["state"] == "OPEN" for a in alerts_ref)
    assert dump(live) == dump(ref)


def test_closes_reuse_the_live_objects_and_forget_drops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    restored = {"mon": 0, "fc": 0}
    mon_restore, fc_restore = DemandMonitor.from_snapshot.__func__, Forecaster.from_snapshot.__func__  # type: ignore[attr-defined]

    def count_mon(cls: Any, *a: Any, **kw: Any) -> Any:
        restored["mon"] += 1
        return mon_restore(cls, *a, **kw)

    def count_fc(cls: Any, *a: Any, **kw: Any) -> Any:
        restored["fc"] += 1
        return fc_restore(cls, *a, **kw)

    monkeypatch.setattr(DemandMonitor, "from_snapshot", classmethod(count_mon))
    monkeypatch.setattr(Forecaster, "from_snapshot", classmethod(count_fc))
    recs = scenario()
    stage = new_stage()
    run(stage, recs[: len(recs) // 2])
    assert restored == {"mon": 0, "fc": 0}  # every close after the first reused the live objects
    stage.forget()  # a rebalance: the table may have been restored from the changelog
    opened = sum(a["state"] == "OPEN" for a in run(stage, recs[len(recs) // 2:]))
    assert opened  # an OPEN restores its forecaster once more, to attach the next day's forecast
    assert restored == {"mon": 2, "fc": 2 + opened}  # once per series after forget(), then live again


def test_the_cache_is_bounded() -> None:
    stage = DemandStage(new_stage().config, {}, {}, Metrics(), live_cache=1)
    ref = cold(stage.config)
    recs = scenario()
    assert run(stage, recs) == run(ref, recs)  # two series, room for one: every other close restores
    assert len(stage._live) <= 1 and len(stage.foresight._live) <= 1
