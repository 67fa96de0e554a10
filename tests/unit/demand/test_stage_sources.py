"""Demand counts summed over several source partitions (one record per key and bucket per commit)."""

from __future__ import annotations

import orjson

from streams.demand.stage import DemandStage, StageConfig, parse_partial
from streams.observability.metrics import Metrics

H = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
CFG = StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", worker="test:1")


def summed(key: str, hour: int, parts: list[list[int]]) -> bytes:
    return orjson.dumps({"k": key, "b": T0 + hour * H, "n": sum(n for _, n, _ in parts), "c": parts})


def open_count(stage: DemandStage, key: str, hour: int) -> int:
    return stage.state[key]["open"].get(str(T0 + hour * H), 0)


def test_both_forms_parse() -> None:
    assert parse_partial(summed("category:masks", 0, [[0, 2, 9], [3, 1, 4]])) == ("category:masks", T0, [(0, 2, 9), (3, 1, 4)])
    assert parse_partial({"k": "region:x", "b": T0, "n": 5, "p": 1, "o": 7}) == ("region:x", T0, [(1, 5, 7)])


def test_only_the_sources_not_yet_applied_count_on_a_resend() -> None:
    stage = DemandStage(CFG, {}, {}, Metrics())
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9], [1, 3, 20]])).status == "applied"
    assert open_count(stage, "category:masks", 0) == 5
    # A restarted worker re-sends source 0 up to offset 9 (already applied) together with new
    # events of source 1 (offsets 21.. up to 30): only source 1's count is added.
    assert stage.handle(0, summed("category:masks", 0, [[0, 2, 9], [1, 4, 30]])).status == "applied"
    assert open_count(stage, "category:masks", 0) == 9
    assert stage.state["category:masks"]["src"] == {"0": [9, [T0]], "1": [30, [T0]]}
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
