"""The on-call feed: alert folding and dedup, bounded rings, rates, and the record filter."""

import orjson
import pytest

from streams.observability.metrics import Metrics
from streams.observability.oncall import OncallFeed, OncallReader, local_counters
from streams.settings import Settings


def alert(state="OPEN", bucket="2026-01-05T08:00:00Z", key="category_region:masks|hubei", observed=13.0, expected=2.3, aid=None, **extra):
    rec = {"schema": "touchpoint.alert.v1", "alert_id": aid or f"{key}:1767600000000:up", "key": key,
           "dimension": key.partition(":")[0], "value": key.partition(":")[2], "state": state, "direction": "surge",
           "severity": 3, "observed": observed, "expected": expected, "excess": observed - expected, "bucket_start": bucket,
           "bucket_end": bucket, "bucket_s": 3600, "opened_at": "2026-01-05T08:00:00Z", "buckets_open": 1, "surprise": 9.0,
           "worker": "h:1"}
    rec.update(extra)
    return rec


def test_an_alert_collects_its_transitions_as_observed_vs_expected_points():
    feed = OncallFeed()
    assert feed.add_alert(alert())
    assert feed.add_alert(alert("ESCALATE", "2026-01-05T09:00:00Z", observed=30, expected=2.5, severity=4))
    snap = feed.snapshot()
    [a] = snap["alerts_open"]
    assert a["key"] == "category_region:masks|hubei" and a["state"] == "ESCALATE" and a["severity"] == 4
    assert [(p["observed"], p["expected"]) for p in a["points"]] == [(13.0, 2.3), (30.0, 2.5)]
    assert a["observed"] == 30 and a["expected"] == 2.5
    assert feed.add_alert(alert("RESOLVED", "2026-01-05T15:00:00Z", observed=3, expected=2.4))
    snap = feed.snapshot()
    assert snap["alerts_open"] == [] and snap["alerts_closed"][0]["state"] == "RESOLVED"


def test_redelivered_records_are_folded_once():
    feed = OncallFeed()
    assert feed.add_alert(alert())
    assert not feed.add_alert(alert())  # at-least-once delivery: same (alert_id, state, bucket_start)
    assert len(feed.snapshot()["alerts_open"][0]["points"]) == 1
    assert not feed.add_alert({"state": "OPEN"})  # unusable record


def test_rings_are_bounded_and_closed_alerts_are_evicted_first():
    feed = OncallFeed(max_alerts=3, max_points=2, max_changes=2)
    feed.add_alert(alert(key="category:masks"))
    for i in range(5):
        feed.add_alert(alert(key=f"product:p{i}"))
        feed.add_alert(alert("RESOLVED", "2026-01-05T10:00:00Z", key=f"product:p{i}"))
    assert len(feed.alerts) == 3
    assert [a["key"] for a in feed.snapshot()["alerts_open"]] == ["category:masks"]  # the open one survived
    for h in range(9, 14):
        feed.add_alert(alert("ESCALATE", f"2026-01-05T{h}:00:00Z", key="category:masks"))
    assert len(feed.alerts["category:masks:1767600000000:up"]["points"]) == 2
    for i in range(5):
        feed.add_change({"type": "merged", "rule": "co_occurrence", "identifiers": ["user_id:u1", "anonymous_id:a"], "profile_id": f"p{i}"})
    assert [c["profile_id"] for c in feed.snapshot()["changes"]] == ["p4", "p3"]
    assert feed.change_counts == {"merged": 5}


def test_rates_come_from_consecutive_samples_and_survive_a_counter_reset():
    feed = OncallFeed()
    feed.add_sample(100.0, {"in": 0, "dlq": 0})
    feed.add_sample(105.0, {"in": 500, "dlq": 10})
    feed.add_sample(110.0, {"in": 50, "dlq": 10})  # the counter restarted
    rates = feed.rates()
    assert rates[0] == {"t": 105.0, "in": 100.0, "dlq": 2.0}
    assert rates[1]["in"] == 10.0 and rates[1]["dlq"] == 0.0


def test_local_counters_read_the_workers_outcomes():
    m = Metrics()
    m.applied.inc(7)
    m.dead_lettered.inc(2)
    m.identity_merges.inc(3)
    c = local_counters(m)
    assert c["local_applied"] == 7 and c["local_dead_lettered"] == 2 and c["local_merges"] == 3


def test_the_reader_keeps_only_merges_and_quarantines_and_every_alert():
    s = Settings.from_env({}, namespace="tp")
    reader = OncallReader(s, OncallFeed())
    changes = [orjson.dumps({"type": t, "rule": "r", "identifiers": ["user_id:u"], "profile_id": "p1"})
               for t in ("created", "linked", "merged", "quarantined", "blocked")]
    reader._take("tp.identity.changes", [*changes, b"not json", None, b'"merged"'])
    assert [c["type"] for c in reader.feed.changes] == ["merged", "quarantined"]
    reader._take("tp.alerts", [orjson.dumps(alert()), b"{broken"])
    assert len(reader.feed.snapshot()["alerts_open"]) == 1


@pytest.mark.parametrize("name", ["oncall.html", "oncall.js", "oncall.css"])
def test_the_page_assets_ship_with_the_package(name):
    from importlib import resources

    body = (resources.files("streams.web") / "static" / name).read_text()
    assert body.strip()
    if name == "oncall.js":
        assert "innerHTML" not in body  # keys and identifiers come from customer events: DOM text only
