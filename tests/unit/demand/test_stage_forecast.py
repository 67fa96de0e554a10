"""The demand stage feeds each monitored series' forecaster the detector's closed buckets."""

from __future__ import annotations

import orjson
import pytest

from streams.web.demand_api import forecast_body, keys_body

from .test_stage import _drive, new_stage, run, scenario, sk


def test_monitored_series_carry_a_forecaster_pooled_ones_do_not() -> None:
    stage = new_stage()
    _drive(stage, range(24 * 7), {"product:tail": 0.2})
    tail, anchor = stage.state[sk("product:tail")], stage.state[sk("category:anchor")]
    assert "fc" not in tail
    fc = anchor["fc"]
    assert len(fc["h"]) == 24 * 7 - 2 and fc["m"]["n"] == len(fc["h"])  # the watermark (1 h lateness) holds 2 back
    assert all(e is not None for _, _, e in fc["h"][30:])  # the detector's expected rides along
    points = stage.foresight.forecast(fc, 48)
    assert len(points) == 48 and 35 < sum(p[1] for p in points) / 48 < 65  # ~50 per hour
    assert len(orjson.dumps(anchor)) < 16_000


def test_open_carries_the_next_day_if_the_shift_holds() -> None:
    stage = new_stage()
    alerts = run(stage, scenario())
    opened = [a for a in alerts if a["state"] == "OPEN" and a["key"] == "category:masks"]
    assert opened, alerts
    rec = opened[0]["forecast"]
    assert rec["if_shift_holds"] and rec["horizon"] == 24 and len(rec["points"]) == 24
    assert rec["ratio"] == pytest.approx(opened[0]["ratio"], rel=1e-3) and rec["ratio"] > 2
    # ~50 per hour normally: if the surge holds, the next day is forecast at its level
    assert sum(p[1] for p in rec["points"]) / 24 > 2 * 40
    assert all(p[4] <= p[2] <= p[1] <= p[3] <= p[5] for p in rec["points"])


def test_api_bodies_from_the_stage_state() -> None:
    stage = new_stage()
    run(stage, scenario())
    rows = keys_body(stage.state.items(), stage.foresight)
    assert {(r["key"], r["measure"]) for r in rows} == {("category:masks", "orders"), ("region:hubei", "orders")}
    hubei = next(r for r in rows if r["key"] == "region:hubei")
    assert hubei["last_value"] == 0.0 and hubei["shift"] == "collapse" and hubei["alert_open"]
    status, body = forecast_body("region:hubei", "orders", 48, stage.state.get(sk("region:hubei")), stage.foresight)
    assert status == 200 and body["shift_open"]["direction"] == "collapse" and len(body["forecast"]) == 48
    assert body["shifts"][-1]["state"] == "OPEN" and body["history"][-1][1] == 0.0
    assert forecast_body("region:nowhere", "orders", 48, None, stage.foresight)[0] == 404
