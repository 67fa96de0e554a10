import orjson
import pytest

from streams.settings import Settings
from touchpoint_tools.bench.pipeline.harness import Drain, hops
from touchpoint_tools.bench.pipeline.procstat import parse_stat_cpu_ticks
from touchpoint_tools.bench.pipeline.report import REQUIRED_KEYS, evaluate_targets, fmt_num, human_table, json_line
from touchpoint_tools.bench.pipeline.topics import OffsetSamples


def sample_result() -> dict:
    return {
        "events": 1000, "events_per_s": 16000.0, "events_per_s_2_workers": 25000.0, "p50_latency_ms": 4.2,
        "p99_latency_ms": 31.0, "cpu_us_per_event": 55.5, "broker_cpu_us_per_event": 9.0, "redis_cpu_us_per_event": 4.0,
        "bytes_per_profile": 1400.0, "bytes_per_demand_key": 900.0, "stages": ["ingest", "identity", "profiles", "demand"],
        "machine": {"cores": 2, "cpu": "x", "python": "3.11"},
        "hops_per_event": {"produced": {"profile-events": 1.01}, "produced_total": 1.01, "consumed": {"touchpoints": 1.0},
                           "consumed_total": 1.0, "total": 2.01},
        "peers": {"quixstreams": {"events_per_s": 8000.0}, "reference": {"events_per_s": 20000.0}, "decode_floor": {"events_per_s": 40000.0}},
        "fraction_of_floor": 0.4, "ratio_vs_reference": 0.8, "ratio_vs_quixstreams": 2.0,
        "redis": {"dedup_bytes_per_event": 281.0, "graph_bytes_per_event": 233.0, "families": {}},
    }


def test_targets_are_evaluated_with_their_direction():
    r = sample_result()
    assert evaluate_targets(r) == {"throughput >= 15000 ev/s": True, "worker CPU <= 60 us/event": True,
                                   "p99 <= 50 ms at 5k ev/s": True, ">= 3x Quix Streams": False}
    r.update(events_per_s=14999.0, cpu_us_per_event=61.0, p99_latency_ms=None)
    t = evaluate_targets(r)
    assert t["throughput >= 15000 ev/s"] is False and t["worker CPU <= 60 us/event"] is False
    assert t["p99 <= 50 ms at 5k ev/s"] is None


def test_json_line_is_one_line_with_required_keys_and_peers():
    r = sample_result()
    r["targets"] = evaluate_targets(r)
    line = json_line(r)
    assert "\n" not in line
    parsed = orjson.loads(line)
    for key in REQUIRED_KEYS:
        assert key in parsed, key
    assert parsed["peers"]["quixstreams"]["events_per_s"] == 8000.0
    assert parsed["peers"]["decode_floor"]["events_per_s"] == 40000.0
    assert parsed["p99_latency_ms"] == 31.0


def test_json_line_rounds_floats():
    assert orjson.loads(json_line({"a": 1.23456, "b": 12345.678, "c": [0.00011]})) == {"a": 1.235, "b": 12345.7, "c": [0.0]}


def test_human_table_shows_every_headline_figure():
    r = sample_result()
    r["targets"] = evaluate_targets(r)
    text = human_table(r)
    assert "16,000 ev/s" in text and "25,000 ev/s" in text
    assert "31.00 ms" in text and "55.5 us" in text
    assert "peer: Quix Streams" in text and "8,000 ev/s" in text and "2.00 x" in text
    assert "peer: no-framework reference" in text and "20,000 ev/s" in text and "0.80 x" in text
    assert "floor: decode + validate only" in text and "40,000 ev/s" in text
    assert "Redis bytes per event: dedup window" in text and "281 B" in text and "233 B" in text
    assert "target throughput >= 15000 ev/s" in text and "met" in text
    assert "ingest, identity, profiles, demand" in text


def test_human_table_survives_missing_figures():
    text = human_table({"events": 10})
    assert "n/a" in text


def test_fmt_num():
    assert fmt_num(1234.5, "us") == "1,234.5 us"
    assert fmt_num(None, "us") == "n/a"
    assert fmt_num(True) == "yes"


def test_offset_samples_window_uses_midpoints():
    s = OffsetSamples([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 10, 20, 30, 30])
    assert s.window() == pytest.approx((0.15, 0.35))
    assert OffsetSamples([0.0, 1.0], [5, 5]).window() is None


def test_stat_parsing_counts_fields_after_the_command_name():
    line = "1234 (touchpoint (worker)) S 1 1234 1234 0 -1 4194560 5000 0 0 0 700 300 0 0 20 0 5 0"
    assert parse_stat_cpu_ticks(line) == 1000


def test_hops_per_input_event():
    s = Settings.from_env({}, namespace="b1")
    records = {"b1.touchpoints": 1000, "b1.profile-events": 1100, "b1.identity.changes": 500, "b1.demand-counts": 50,
               "b1.touchpoints.dlq": 0, "b1.touchpoint-profiles-changelog": 1100}
    d = Drain(1, 1000, 1.0, 1000.0, {}, ["ingest", "identity", "profiles", "demand"], records, settings=s)
    h = hops(d)
    assert h["produced"]["profile-events"] == 1.1
    assert h["produced"]["profiles-changelog"] == 1.1
    assert "touchpoints" not in h["produced"]
    assert h["produced_total"] == 1.1 + 0.5 + 0.05 + 1.1
    assert h["consumed"] == {"touchpoints": 1.0, "profile-events": 1.1, "demand-counts": 0.05}
    assert abs(h["total"] - (h["produced_total"] + 2.15)) < 1e-9


def test_log_batches_reads_v2_batch_headers(tmp_path):
    import struct

    from touchpoint_tools.bench.pipeline.topics import log_batches

    def batch(count: int, body: int = 40) -> bytes:
        header = bytearray(61)
        struct.pack_into(">q", header, 0, 0)
        struct.pack_into(">i", header, 8, 49 + body)  # batchLength counts everything after itself
        struct.pack_into(">i", header, 57, count)
        return bytes(header) + b"x" * body

    part = tmp_path / "ns.profile-events-0"
    part.mkdir()
    (part / "00000000000000000000.log").write_bytes(batch(3) + batch(5) + b"\x00" * 7)
    other = tmp_path / "ns.profile-events.x-0"  # another topic sharing the prefix
    other.mkdir()
    (other / "00000000000000000000.log").write_bytes(batch(100))
    assert log_batches(tmp_path, "ns.profile-events") == (2, 8)
    assert log_batches(tmp_path, "ns.missing") == (0, 0)
