"""Demand counts summed over several source partitions (one record per key and bucket per commit)."""

from __future__ import annotations

import orjson

from streams.demand.stage import DemandStage, StageConfig, parse_partial, series_key
from streams.observability.metrics import Metrics

H = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
CFG = StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", worker="test:1")


def summed(key: str, hour: int, parts: list[list[int]], measure: str = "units") -> bytes:
    return orjson.dumps({"k": key, "m": measure, "b": T0 + hour * H, "n": sum(n for _, n, _ in parts), "c": parts})


def open_count(stage: DemandStage, key: str, hour: int) -> int:
    return stage.state[series_key(key, "units")]["open"].get(str(T0 + hour * H), 0)


def test_every_form_parses() -> None:
    assert parse_partial(summed("category:masks", 0, [[0, 2, 9], [3, 1, 4]])) == ("category:masks", "units", T0, [(0, 2, 9), (3, 1, 4)])
    revenue = {"k": "store:s-1", "m": "revenue", "b": T0, "n": 12.5, "c": [[0, 12.5, 3]]}
    assert parse_partial(revenue) == ("store:s-1", "revenue", T0, [(0, 12.5, 3)])
    # Written before measures: the old count of every demand event, in both of its forms.
    assert parse_partial({"k": "region:x", "b": T0, "n": 5, "p": 1, "o": 7}) == ("region:x", "events", T0, [(1, 5, 7)])
    assert parse_partial({"k": "region:x", "b": T0, "n": 5, "c": [[1, 5, 7]]})[1] == "events"


def test_a_measure_that_is_not_watched_is_counted_and_skipped() -> None:
    stage = DemandStage(StageConfig(bucket_s=3600, lateness_s=3600, measures=("orders",)), {}, {}, Metrics())
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9]])).status == "unwatched"
    assert stage.handle(0, orjson.dumps({"k": "category:masks", "b": T0, "n": 3, "p": 0, "o": 1})).status == "unwatched"
    assert stage.state == {}
    assert stage.metrics.registry.get_sample_value("touchpoint_demand_uncounted_total", {"reason": "unwatched_measure"}) == 2
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9]], "orders")).status == "applied"
    assert list(stage.state) == ["orders/category:masks"]


def test_only_the_sources_not_yet_applied_count_on_a_resend() -> None:
    stage = DemandStage(CFG, {}, {}, Metrics())
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9], [1, 3, 20]])).status == "applied"
    assert open_count(stage, "category:masks", 0) == 5
    # A restarted worker re-sends source 0 up to offset 9 (already applied) together with new
    # events of source 1 (offsets 21.. up to 30): only source 1's count is added.
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9], [1, 4, 30]])).status == "applied"
    assert open_count(stage, "category:masks", 0) == 9
    assert stage.state[series_key("category:masks", "units")]["src"] == {"0": [9, [T0]], "1": [30, [T0]]}
    # Everything already applied: skipped whole, counted as a replay.
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9], [1, 4, 30]])).status == "replayed"
    assert open_count(stage, "category:masks", 0) == 9
    assert stage.metrics.registry.get_sample_value("touchpoint_demand_replayed_counts_total") == 1


def test_several_buckets_at_the_same_offsets_all_count() -> None:
    stage = DemandStage(CFG, {}, {}, Metrics())
    stage.handle(0, summed("region:hubei", 0, [[0, 1, 5]]))
    stage.handle(0, summed("region:hubei", 1, [[0, 2, 5]]))  # same flush, next bucket
    assert (open_count(stage, "region:hubei", 0), open_count(stage, "region:hubei", 1)) == (1, 2)
    assert stage.handle(0, summed("region:hubei", 1, [[0, 2, 5]])).status == "replayed"


def test_live_state_is_addressable_by_key_and_measure() -> None:
    from streams.demand.stage import list_series, parse_series_key, read_monitor

    stage = DemandStage(CFG, {"category:old": {"q": 0, "mon": None}}, {}, Metrics())  # a pre-measure entry
    for hour in range(6):
        stage.handle(0, summed("category:masks", hour, [[0, 60, hour]], "orders"))
        stage.handle(0, summed("category:masks", hour, [[0, 150, hour]], "units"))
    assert list_series(stage.state) == [("category:masks", "orders"), ("category:masks", "units"), ("category:old", "events")]
    assert list_series(stage.state, ("units",)) == [("category:masks", "units")]
    assert parse_series_key("units/category_region:a/b|c") == ("category_region:a/b|c", "units")
    mon = read_monitor(stage.state, "category:masks", "units", CFG)
    assert mon is not None and mon.lifecycle.measure == "units" and mon.detector.n == 4  # 4 closed buckets
    assert 100 < mon.detector.level < 200  # the units series, not the orders one
    assert read_monitor(stage.state, "category:masks", "revenue", CFG) is None
    assert read_monitor(stage.state, "category:old", "events", CFG) is None  # pooled/empty: nothing to read
