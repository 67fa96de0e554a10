"""The demand stage without Kafka: watermark closing, zero buckets, late counts, replay skip, restore."""

from __future__ import annotations

import json
import random
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from streams.demand.stage import DemandStage, StageConfig, series_key
from streams.observability.metrics import Metrics
from touchpoint_tools.simulate.sampling import poisson

H = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
CFG = StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", worker="test:1")


M = "orders"


def sk(key: str) -> str:
    """The state key of ``key``'s orders series."""
    return series_key(key, M)


def msg(key: str, hour: int, n: int, p: int = 0, o: int = 0) -> bytes:
    return orjson.dumps({"k": key, "m": M, "b": T0 + hour * H, "n": n, "c": [[p, n, o]]})


def new_stage(cfg: StageConfig = CFG, state: MutableMapping[str, Any] | None = None,
              clocks: MutableMapping[str, Any] | None = None) -> DemandStage:
    return DemandStage(cfg, {} if state is None else state, {} if clocks is None else clocks, Metrics())


def fed(stage: DemandStage, key: str) -> tuple[int, int | None]:
    """(buckets closed for the key - by its monitor, or by its pooled EWMA - , start of the last one)."""
    entry = stage.state[sk(key)]
    mon = entry["mon"]
    if mon is None:
        seen = entry.get("pool", [0.0, 0])[1]
        return seen, (entry["next"] - H if seen else None)
    return mon["detector"]["n"], mon["detector"]["last_ts_ms"]


def scenario(hours: int = 5 * 24, seed: int = 3) -> list[tuple[int, bytes]]:
    """(partition, value) records: two keys at ~50/h, a x5 surge on one for 5 h from hour 96,
    a collapse to 0 on the other from hour 100; offsets rise like an ingest batch's."""
    rng = random.Random(seed)
    out = []
    for h in range(hours):
        for key, base in (("category:masks", 50), ("region:hubei", 40)):
            n = base + rng.randint(-6, 6)
            if key == "category:masks" and 96 <= h < 101:
                n *= 5
            if key == "region:hubei" and h >= 100:
                continue  # nothing at all: only zero buckets can show it
            out.append((0, msg(key, h, n, p=0, o=10 * h + 9)))
    return out


def run(stage: DemandStage, records: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for partition, value in records:
        alerts += stage.handle(partition, value).alerts
    return alerts


def test_bucket_closes_only_when_the_watermark_passes_its_end() -> None:
    stage = new_stage()
    stage.handle(0, msg("category:masks", 0, 5))
    stage.handle(0, msg("category:masks", 1, 7, o=1))
    assert fed(stage, "category:masks") == (0, None)  # watermark = 1h - 1h lateness: bucket 0 still open
    assert stage.state[sk("category:masks")]["open"] == {str(T0): 5, str(T0 + H): 7}
    stage.handle(0, msg("category:masks", 2, 1, o=2))
    assert fed(stage, "category:masks") == (1, T0)
    assert stage.clocks["0"] == {"max_b": T0 + 2 * H, "closed": T0 + H}
    assert stage.state[sk("category:masks")]["open"] == {str(T0 + H): 7, str(T0 + 2 * H): 1}
    # A jump of the watermark closes every bucket it passed, in order.
    stage.handle(0, msg("category:masks", 6, 1, o=3))
    assert fed(stage, "category:masks") == (5, T0 + 4 * H)


def test_watermarks_are_per_partition() -> None:
    stage = new_stage(StageConfig(bucket_s=3600, lateness_s=0, timezone="UTC"))
    stage.handle(0, msg("category:masks", 0, 5))
    stage.handle(1, msg("region:hubei", 0, 5))
    stage.handle(0, msg("category:masks", 3, 5, o=1))
    assert fed(stage, "category:masks")[0] == 3
    assert fed(stage, "region:hubei")[0] == 0  # partition 1 has not moved
    assert stage.keys_of(0) == {sk("category:masks")} and stage.keys_of(1) == {sk("region:hubei")}


def test_silent_keys_get_zero_buckets_and_a_collapse_to_zero_is_seen() -> None:
    stage = new_stage()
    alerts = run(stage, scenario())
    assert fed(stage, "region:hubei") == fed(stage, "category:masks")
    collapse = [a for a in alerts if a["key"] == "region:hubei" and a["state"] == "OPEN"]
    assert collapse and collapse[0]["direction"] == "collapse" and collapse[0]["observed"] == 0
    assert 100 <= _hour(collapse[0]["bucket_start"]) <= 103


def _hour(iso: str) -> int:
    from datetime import datetime

    return int((datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000 - T0) // H)


def test_surge_opens_then_resolves_and_the_gauge_follows() -> None:
    stage = new_stage()
    records = scenario()
    alerts = run(stage, records[: 2 * 99])  # up to hour 98: surge bucket 96 closes when hour 98 is seen
    opened = [a for a in alerts if a["key"] == "category:masks" and a["state"] == "OPEN"]
    assert [(_hour(a["bucket_start"]), a["direction"]) for a in opened] == [(96, "surge")]
    assert opened[0]["bucket_end"] == "2026-01-09T01:00:00Z" and opened[0]["worker"] == "test:1"
    gauge = stage.metrics.registry.get_sample_value
    assert gauge("touchpoint_demand_alerts_open", {"dimension": "category", "measure": M, "direction": "surge"}) == 1
    alerts += run(stage, records[2 * 99:])
    states = [a["state"] for a in alerts if a["alert_id"] == opened[0]["alert_id"]]
    assert states[0] == "OPEN" and states[-1] == "RESOLVED"
    assert gauge("touchpoint_demand_alerts_open", {"dimension": "category", "measure": M, "direction": "surge"}) == 0
    assert (gauge("touchpoint_demand_alert_transitions_total", {"state": "RESOLVED", "measure": M}) or 0) >= 1


def test_late_counts_are_counted_and_never_reopen_a_bucket() -> None:
    stage = new_stage()
    run(stage, [(0, msg("category:masks", h, 10, o=h)) for h in range(5)])
    before = json.dumps(stage.state[sk("category:masks")]["mon"], sort_keys=True)
    out = stage.handle(0, msg("category:masks", 1, 99, p=1, o=0))
    assert out.status == "late" and not out.alerts
    assert str(T0 + H) not in stage.state[sk("category:masks")]["open"]
    assert json.dumps(stage.state[sk("category:masks")]["mon"], sort_keys=True) == before
    assert stage.metrics.registry.get_sample_value("touchpoint_demand_late_counts_total") == 1
    # A key whose first count is late still exists from the first open bucket on.
    assert stage.handle(0, msg("category:travel", 0, 3, p=1, o=1)).status == "late"
    stage.handle(0, msg("category:masks", 7, 10, o=7))
    assert fed(stage, "category:travel") == (3, T0 + 5 * H)  # buckets 3h, 4h, 5h


def test_partial_counts_resent_after_a_crash_are_skipped() -> None:
    stage = new_stage()
    # One ingest batch covering two buckets sends both with the same (p, o): both count.
    assert stage.handle(0, msg("category:masks", 0, 4, p=2, o=500)).status == "applied"
    assert stage.handle(0, msg("category:masks", 1, 6, p=2, o=500)).status == "applied"
    assert stage.handle(0, msg("category:masks", 1, 2, p=3, o=80)).status == "applied"
    snapshot = json.dumps(stage.state, sort_keys=True)
    # The restarted ingest re-sends the batch (and an older one): nothing changes.
    for value in (msg("category:masks", 0, 4, p=2, o=500), msg("category:masks", 1, 6, p=2, o=500),
                  msg("category:masks", 0, 9, p=2, o=200)):
        assert stage.handle(0, value).status == "replayed"
    assert json.dumps(stage.state, sort_keys=True) == snapshot
    assert stage.state[sk("category:masks")]["open"] == {str(T0): 4, str(T0 + H): 8}
    assert stage.metrics.registry.get_sample_value("touchpoint_demand_replayed_counts_total") == 3
    assert stage.handle(0, msg("category:masks", 1, 1, p=2, o=501)).status == "applied"


def test_restore_from_json_state_gives_identical_alerts_even_with_a_replay() -> None:
    records = scenario()
    reference = run(new_stage(), records)
    assert any(a["state"] == "OPEN" for a in reference)

    first = new_stage()
    cut = 2 * 97 + 1
    before = run(first, records[:cut])
    # A new worker recovers the tables from their JSON changelog, then the consumer replays the
    # records after its last commit (here: the last 20) before new ones.
    state, clocks = json.loads(json.dumps(first.state)), json.loads(json.dumps(first.clocks))
    second = new_stage(state=state, clocks=clocks)
    after = run(second, records[cut - 20:])
    assert before + after == reference
    assert second.state == json.loads(json.dumps(reference_state(records)))


def reference_state(records: list[tuple[int, bytes]]) -> MutableMapping[str, Any]:
    stage = new_stage()
    run(stage, records)
    return stage.state


def test_process_writes_nothing_until_commit() -> None:
    stage = new_stage()
    out = stage.process(0, msg("category:masks", 0, 5))
    assert stage.state == {} and stage.clocks == {}
    assert set(out.writes) == {sk("category:masks")} and out.clock is not None
    stage.commit(out)
    assert stage.state[sk("category:masks")]["open"] == {str(T0): 5}


def test_forget_rebuilds_keys_and_open_alerts_from_the_state() -> None:
    stage = new_stage()
    run(stage, scenario()[: 2 * 99])
    again = new_stage(state=stage.state, clocks=stage.clocks)
    assert again.keys_of(0) == {sk("category:masks"), sk("region:hubei")}
    gauge = again.metrics.registry.get_sample_value
    assert gauge("touchpoint_demand_alerts_open", {"dimension": "category", "measure": M, "direction": "surge"}) == 1
    again.forget()
    assert gauge("touchpoint_demand_alerts_open", {"dimension": "category", "measure": M, "direction": "surge"}) == 0


@pytest.mark.parametrize("bucket_s, expected", [(300, 864), (3600, 72), (86400, 3)])
def test_new_normal_after_three_days_of_buckets(bucket_s: int, expected: int) -> None:
    cfg = StageConfig(bucket_s=bucket_s).lifecycle_config("orders")
    assert cfg.new_normal_buckets == expected and cfg.recent_buckets == expected // 3 and cfg.min_excess == 12


def test_bad_records_raise_for_the_agent_to_count() -> None:
    stage = new_stage()
    with pytest.raises(Exception):
        stage.handle(0, b"{not json")
    with pytest.raises(ValueError):
        stage.handle(0, orjson.dumps({"k": "nocolon", "b": T0, "n": 1, "p": 0, "o": 0}))
    assert stage.state == {}


# ----------------------------------------------------------------------------- pooling

def _drive(stage: DemandStage, hours: range, rates: dict[str, Any], seed: int = 1) -> list[dict[str, Any]]:
    """Feed hourly counts: ``rates[key]`` is a rate per hour or a function of the hour returning one.
    ``category:anchor`` (50/h) keeps the partition's watermark moving."""
    rng = random.Random(seed)
    alerts: list[dict[str, Any]] = []
    for h in hours:
        for key, rate in {"category:anchor": 50.0, **rates}.items():
            lam = rate(h) if callable(rate) else rate
            n = poisson(rng, lam, normal_above=None)
            if n:
                alerts += stage.handle(0, msg(key, h, n, o=h)).alerts
    return alerts


def test_sparse_keys_are_pooled_with_a_tiny_fixed_state() -> None:
    stage = new_stage()
    _drive(stage, range(24 * 7), {"product:tail": 0.2})
    tail, anchor = stage.state[sk("product:tail")], stage.state[sk("category:anchor")]
    assert tail["mon"] is None and tail["pool"][0] < 0.5 and tail["pool"][1] > 100
    assert anchor["mon"] is not None and "prior" not in anchor  # full from its first bucket
    pooled_bytes, full_bytes = len(orjson.dumps(tail)), len(orjson.dumps(anchor))
    # A full series also carries its forecaster and a week of hourly history (foresight.py).
    assert pooled_bytes < 250 and 2_000 < full_bytes < 16_000, (pooled_bytes, full_bytes)


def test_a_pooled_key_that_rises_is_promoted_and_its_surge_alerts() -> None:
    stage = new_stage()
    surge_at = 24 * 5
    alerts = _drive(stage, range(surge_at + 12), {"product:tail": lambda h: 0.3 if h < surge_at else 15.0})
    assert stage.state[sk("product:tail")]["mon"] is not None
    opened = [a for a in alerts if a["key"] == "product:tail" and a["state"] == "OPEN"]
    assert opened and opened[0]["direction"] == "surge"
    assert surge_at <= _hour(opened[0]["bucket_start"]) <= surge_at + 2
    # Judged against the pooled level it rose from, not against itself.
    assert opened[0]["expected"] < 1.0 and stage.state[sk("product:tail")]["prior"] < 1.0


def test_a_full_key_collapsing_to_zero_alerts_and_stays_full_while_the_alert_is_open() -> None:
    stage = new_stage()
    stop = 24 * 4
    alerts = _drive(stage, range(stop), {"product:small": 3.0})
    assert stage.state[sk("product:small")]["mon"] is not None
    # The key sends nothing any more: only zero buckets show the collapse.
    alerts += _drive(stage, range(stop, stop + 20), {})
    opened = [a for a in alerts if a["key"] == "product:small" and a["state"] == "OPEN"]
    # Published once the deficit beyond its largest bucket reaches the volume rule (12 orders + 3).
    assert opened and opened[0]["direction"] == "collapse" and _hour(opened[0]["bucket_start"]) <= stop + 10
    entry = stage.state[sk("product:small")]
    assert entry["mon"] is not None and entry["mon"]["lifecycle"]["alert_id"]  # pinned by the open alert
    # Once the alert has become the new normal and the volume has drained, the key is pooled.
    alerts += _drive(stage, range(stop + 20, stop + 24 * 4), {})
    states = [a["state"] for a in alerts if a["alert_id"] == opened[0]["alert_id"]]
    assert states[-1] in ("NEW_NORMAL", "RESOLVED")
    assert stage.state[sk("product:small")]["mon"] is None


def test_pooling_can_be_switched_off() -> None:
    stage = new_stage(StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", pool_floor=0.0))
    _drive(stage, range(48), {"product:tail": 0.2})
    assert stage.state[sk("product:tail")]["mon"] is not None


def test_a_brand_new_series_raises_nothing_before_it_has_a_daily_baseline() -> None:
    # A new store opening: a quiet night (pooled), then its first business hours. Ten hours of
    # history are no baseline: judged against its pooled night level it would be a x60 "surge".
    stage = new_stage()
    alerts = _drive(stage, range(36), {"store:new": lambda h: 0.3 if h < 10 else 20.0})
    entry = stage.state[sk("store:new")]
    assert entry["mon"] is not None and "prior" not in entry  # promoted without a prior
    assert [a for a in alerts if a["key"] == "store:new"] == []


def test_a_key_promoted_mid_surge_falling_back_to_where_it_came_from_opens_no_collapse() -> None:
    # A long-tail product (0.5 orders an hour, pooled) surges x6 for 36 hours: its pooled level
    # reaches the floor a few hours in, so its monitor starts on the surge, and its daily tier
    # (two days of its own history) learns the surge hours. Demand back at 0.5 is where the key came
    # from, not a collapse (before the stage remembered the pre-rise level: a collapse at hour 160).
    stage = new_stage()
    surge, end = 100, 136
    alerts = _drive(stage, range(end + 72), {"product:tail": lambda h: 0.5 * (6.0 if surge <= h < end else 1.0)})
    assert [a for a in alerts if a["key"] == "product:tail" and a["direction"] == "collapse"] == []
    entry = stage.state[sk("product:tail")]
    assert entry["mon"] is not None and entry["prior"] > 0.8  # promoted mid-surge, its prior the rise
    assert entry["pool"][2] < 0.8  # the level before the rise, remembered
