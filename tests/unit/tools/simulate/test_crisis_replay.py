"""The demo's crisis offline: ground truth per series and the check of alerts against it."""

from touchpoint_tools.simulate.crisis_replay import DAY_MS, HOUR_MS, CrisisRun, Truth, check_alerts, ground_truth, shift_lines
from touchpoint_tools.simulate.population import crisis

RUN = CrisisRun(events=3000, seed=5, start_ms=1_780_000_000_000 - 1_780_000_000_000 % HOUR_MS)
C = RUN.crisis_ms


def _alert(key: str, measure: str, direction: str, opened: int, published: int, state: str = "OPEN") -> list[dict]:
    iso = __import__("streams.demand.buckets", fromlist=["iso_utc"]).iso_utc
    rec = {"alert_id": f"{measure}/{key}:{opened}", "key": key, "measure": measure, "direction": direction,
           "opened_at": iso(opened), "bucket_start": iso(published), "state": "OPEN", "severity": 1, "ratio": 2.0}
    out = [rec]
    if state != "OPEN":
        out.append({**rec, "state": state, "bucket_start": iso(published + DAY_MS)})
    return out


def test_a_series_multiplier_is_the_share_weighted_scenario_factor() -> None:
    truth = Truth(crisis(C), {"orders/category:travel": {("travel", "hubei"): 1.0},
                              "revenue/region:hubei": {("travel", "hubei"): 0.5, ("groceries", "hubei"): 0.5},
                              "orders/region:hubei": {("travel", "hubei"): 0.1, ("groceries", "hubei"): 0.9}})
    after = C + 20 * HOUR_MS  # travel x0.3 from crisis + 10 h
    assert truth.multiplier("orders/category:travel", after) == 0.3
    assert abs(truth.multiplier("revenue/region:hubei", after) - 0.65) < 1e-9
    assert truth.shifted("revenue/region:hubei", "collapse", after, after)
    assert not truth.shifted("orders/region:hubei", "collapse", after, after)  # 0.93: within 20 %
    assert not truth.shifted("orders/category:travel", "surge", C, after)
    assert truth.multiplier("orders/category:unknown", after) == 1.0


def test_alerts_are_matched_to_real_shifts_and_persistence_is_reported() -> None:
    truth = Truth(crisis(C), {"orders/category:travel": {("travel", "beijing"): 1.0},
                              "orders/category:groceries": {("groceries", "beijing"): 1.0}})
    records = (_alert("category:travel", "orders", "collapse", C + 11 * HOUR_MS, C + 14 * HOUR_MS, "NEW_NORMAL")
               + _alert("category:groceries", "orders", "surge", C + 11 * HOUR_MS, C + 14 * HOUR_MS)
               + _alert("category:travel", "orders", "surge", C - 2 * DAY_MS, C - 2 * DAY_MS))
    verdict = check_alerts(records, truth)
    assert [s.key for s in verdict.matched] == ["category:travel"]
    assert sorted(s.key for s in verdict.unmatched) == ["category:groceries", "category:travel"]
    lines = shift_lines(verdict, crisis(C), C + 5 * DAY_MS)
    travel = next(line for line in lines if line.startswith("category:travel"))
    assert "wanted NEW_NORMAL" in travel and "orders NEW_NORMAL (alerted +4 h)" in travel
    assert any(line.startswith("category:sanitizer") and line.endswith("no alert") for line in lines)


def test_ground_truth_shares_come_from_the_simulated_events_before_the_crisis() -> None:
    truth = ground_truth(RUN, ("category", "region"), ("orders", "interest"))
    travel = truth.shares["orders/category:travel"]
    assert set(c for c, _ in travel) == {"travel"} and abs(sum(travel.values()) - 1.0) < 1e-9
    hubei = truth.shares["interest/region:hubei"]
    assert {r for _, r in hubei} == {"hubei"} and len({c for c, _ in hubei}) >= 5
    late = RUN.crisis_ms + 2 * DAY_MS
    assert truth.multiplier("orders/category:travel", late) == 0.3
    assert 0.3 < truth.multiplier("interest/region:hubei", late) < 2.0


def test_shift_keys_count_what_a_planner_was_told_per_shift_and_key() -> None:
    from touchpoint_tools.simulate.crisis_replay import shift_keys

    truth = Truth(crisis(C), {"units/store:s-hubei": {("masks", "hubei"): 0.3, ("online_courses", "hubei"): 0.2},
                              "orders/store:s-hubei": {("masks", "hubei"): 0.3, ("online_courses", "hubei"): 0.2},
                              "units/category:masks": {("masks", "hubei"): 0.2, ("masks", "beijing"): 0.8},
                              "units/region:beijing": {("masks", "beijing"): 0.1}})
    records = (_alert("store:s-hubei", "units", "surge", C + HOUR_MS, C + 8 * HOUR_MS)
               + _alert("store:s-hubei", "orders", "surge", C + 2 * HOUR_MS, C + 6 * HOUR_MS)
               + _alert("category:masks", "units", "surge", C + HOUR_MS, C + 7 * HOUR_MS)
               + _alert("region:beijing", "units", "surge", C + HOUR_MS, C + 7 * HOUR_MS))
    verdict = check_alerts(records, Truth(truth.scenario, {**truth.shares, "units/region:beijing": {("masks", "hubei"): 1.0}}))
    pairs = shift_keys(verdict, truth)
    # The store's units and orders alerts are one thing a planner was told per shift they overlap
    # (masks in hubei from hour 6, online courses from hour 12: neither alert reached it).
    assert pairs[("masks|hubei x5", "store:s-hubei", "surge")] == ["orders", "units"]
    assert not any(k[0].startswith("online_courses") and k[1] == "store:s-hubei" for k in pairs)
    assert pairs[("masks|hubei x5", "category:masks", "surge")] == ["units"]
    # A series that sums no pair the shift moved is no pair of that shift (even when matched).
    assert "region:beijing" in {s.key for s in verdict.matched}
    assert not any(k[1] == "region:beijing" for k in pairs)
