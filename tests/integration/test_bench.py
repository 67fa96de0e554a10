"""``touchpoint bench --quick`` on the real stack: the JSON line is last, complete and sane.

A harness check with a few thousand events; the figures themselves are not asserted (the
machine is shared), only that each was measured and is plausible.
"""

from __future__ import annotations

import orjson
import pytest

from tests.fixtures.stack import run_cli
from touchpoint_tools.bench.pipeline.report import REQUIRED_KEYS

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)  # first use may install the Quix peer into .venv-bench
def test_quick_bench_prints_a_complete_json_line_last(settings, stack, tmp_path):
    s = settings.with_(stack_dir=str(stack.home), stack_kafka_port=stack.kafka_port,
                       stack_controller_port=stack.controller_port, stack_redis_port=stack.redis_port)
    done = run_cli(s, "bench", "--quick", "--events", "3000", "--workdir", str(tmp_path / "bench"), timeout_s=580)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    lines = out.strip().splitlines()
    assert "touchpoint bench" in out  # the human table comes first
    r = orjson.loads(lines[-1])

    for key in REQUIRED_KEYS:
        assert key in r, key
    assert r["events"] == 3000
    assert r["machine"]["cores"] >= 1
    assert r["stages"][:2] == ["ingest", "identity"]

    assert r["events_per_s"] > 0 and r["events_per_s_2_workers"] > 0
    assert 0 < r["cpu_us_per_event"] < 1_000_000
    assert r["broker_cpu_us_per_event"] is not None and r["broker_cpu_us_per_event"] >= 0
    assert r["redis_cpu_us_per_event"] is not None and r["redis_cpu_us_per_event"] >= 0
    assert 0 < r["p50_latency_ms"] <= r["p99_latency_ms"] < 120_000
    assert r["latency"]["samples"] + r["latency"]["unmatched"] > 0

    hops = r["hops_per_event"]
    assert hops["consumed"]["touchpoints"] == 1.0
    # bundled: one profile-events record per ingest batch and partition, not one per event
    assert 0 < hops["produced"]["profile-events"] < 0.5
    if "profiles" in r["stages"]:
        # every applied event updates its profile; a key is written once per bundle
        assert 0.3 <= hops["produced"]["profiles-changelog"] <= 1.1
    assert hops["total"] >= hops["produced_total"] + 1

    for peer in ("decode_floor", "reference", "quixstreams"):
        p = r["peers"][peer]
        assert p.get("events_per_s") and p["events_per_s"] > 0, p
        assert p["events"] == 3000 and p["valid"] == 3000 and not p["timed_out"]
    assert r["fraction_of_floor"] > 0 and r["ratio_vs_reference"] > 0 and r["ratio_vs_quixstreams"] > 0
    # every event claims a dedup key; the graph holds at least one identifier per event's person
    assert r["redis"]["families"]["dedup"]["per_event"] == 1.0
    assert r["redis"]["dedup_bytes_per_event"] > 50 and r["redis"]["graph_bytes_per_event"] > 0
    if "profiles" in r["stages"]:
        assert r["bytes_per_profile"] > 0
    if "demand" in r["stages"]:
        assert r["bytes_per_demand_key"] > 0
    assert set(r["targets"]) == {"throughput >= 15000 ev/s", "worker CPU <= 60 us/event", "p99 <= 50 ms at 5k ev/s",
                                 ">= 3x Quix Streams"}
