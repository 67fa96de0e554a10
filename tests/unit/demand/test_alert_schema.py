"""Alert records produced by the demand stage match schemas/alert.v1.json; their renderings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import fastjsonschema
import pytest

from streams.cli.alerts import format_alert
from streams.demand.alerting import to_alertmanager
from streams.demand.stage import StageConfig

from .test_stage import new_stage, run, scenario

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "alert.v1.json").read_text())
validate = fastjsonschema.compile(SCHEMA)


def produced() -> list[dict]:
    # Eight days: a short surge (OPEN, RESOLVED) and a collapse to 0 that lasts three days (OPEN, NEW_NORMAL).
    stage = new_stage(StageConfig(bucket_s=3600, lateness_s=3600, timezone="UTC", worker="host:42"))
    return run(stage, scenario(hours=8 * 24))


def test_every_produced_record_is_valid() -> None:
    alerts = produced()
    assert {"OPEN", "RESOLVED", "NEW_NORMAL"} <= {a["state"] for a in alerts}
    for alert in alerts:
        validate(json.loads(json.dumps(alert)))  # as a consumer reads it from the topic


def test_schema_rejects_unknown_fields_and_states() -> None:
    alert = produced()[0]
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate({**alert, "email": "x@example.com"})
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate({**alert, "state": "CLOSED"})
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate({**alert, "bucket_start": "2026-01-05 10:00"})


def test_tail_line_for_on_call_staff() -> None:
    alert = {"state": "OPEN", "direction": "surge", "key": "category_region:masks|hubei", "measure": "units",
             "observed": 512.0, "expected": 98.2, "ratio": 4.6, "severity": 3, "bucket_start": "2026-03-02T10:05:00Z",
             "buckets_open": 2}
    assert format_alert(alert) == ("2026-03-02T10:05Z OPEN       surge    units    category_region:masks|hubei  "
                                   "observed 512 vs expected 98 (x5.2 this bucket, x4.6 since open) severity 3")
    legacy = {k: v for k, v in alert.items() if k not in ("measure", "ratio")}  # records written before measures
    assert format_alert(legacy) == ("2026-03-02T10:05Z OPEN       surge    category_region:masks|hubei  "
                                    "observed 512 vs expected 98 (x5.2 this bucket) severity 3")
    cold = format_alert({**alert, "expected": None, "state": "RESOLVED", "buckets_open": 7})
    assert "no baseline yet" in cold and cold.endswith("open 7 buckets")


def test_alertmanager_mapping() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    alert = produced()[0]
    posted = to_alertmanager(alert, now)
    assert posted["labels"]["alertname"] == "DemandShift" and posted["labels"]["alert_id"] == alert["alert_id"]
    assert posted["labels"]["measure"] == alert["measure"] == "orders" and "of orders on" in posted["annotations"]["summary"]
    assert posted["startsAt"] == alert["opened_at"] and posted["endsAt"] > "2026-03-02T12:00:00Z"
    resolved = to_alertmanager({**alert, "state": "RESOLVED"}, now)
    assert resolved["endsAt"] == "2026-03-02T12:00:00Z"
