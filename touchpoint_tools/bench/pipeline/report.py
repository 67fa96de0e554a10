"""The bench's output: a human table, then one JSON line (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["REQUIRED_KEYS", "TARGETS", "evaluate_targets", "json_line", "human_table", "fmt_num"]

# Keys the JSON line always has (values may be null when a figure could not be measured).
REQUIRED_KEYS = (
    "events", "events_per_s", "events_per_s_2_workers", "p50_latency_ms", "p99_latency_ms",
    "cpu_us_per_event", "broker_cpu_us_per_event", "redis_cpu_us_per_event",
    "bytes_per_profile", "bytes_per_demand_key", "hops_per_event", "stages", "machine", "peers",
    "fraction_of_floor", "ratio_vs_reference", "ratio_vs_quixstreams", "targets",
)

# name -> (JSON key, comparison, threshold); the targets (reported, not enforced).
TARGETS: dict[str, tuple[str, str, float]] = {
    "throughput >= 15000 ev/s": ("events_per_s", ">=", 15_000.0),
    "worker CPU <= 60 us/event": ("cpu_us_per_event", "<=", 60.0),
    "p99 <= 50 ms at 5k ev/s": ("p99_latency_ms", "<=", 50.0),
    ">= 3x Quix Streams": ("ratio_vs_quixstreams", ">=", 3.0),
}


def evaluate_targets(result: Mapping[str, Any]) -> dict[str, bool | None]:
    """Each target -> met (True/False), or None when its figure is missing."""
    out: dict[str, bool | None] = {}
    for name, (key, op, threshold) in TARGETS.items():
        value = result.get(key)
        if value is None:
            out[name] = None
        else:
            out[name] = value >= threshold if op == ">=" else value <= threshold
    return out


def json_line(result: Mapping[str, Any]) -> str:
    """The machine-readable result on one line (keys sorted, floats rounded for reading)."""
    return orjson.dumps(_rounded(result), option=orjson.OPT_SORT_KEYS).decode()


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if abs(value) < 100 else round(value, 1)
    if isinstance(value, Mapping):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def fmt_num(value: Any, unit: str = "", digits: int = 1) -> str:
    """A figure for the table: thousands separated, ``n/a`` for missing.

    >>> fmt_num(15234.56, "ev/s", 0)
    '15,235 ev/s'
    >>> fmt_num(None)
    'n/a'
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = f"{value:,.{digits}f}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def human_table(result: Mapping[str, Any]) -> str:
    """The human-readable report (everything the JSON line has, grouped)."""
    r = result
    peers = r.get("peers") or {}
    quix = peers.get("quixstreams") or {}
    floor = peers.get("decode_floor") or {}
    reference = peers.get("reference") or {}
    lat = r.get("latency") or {}
    mem = r.get("memory") or {}
    redis = r.get("redis") or {}
    machine = r.get("machine") or {}
    rows: list[tuple[str, str, str]] = [
        ("pipeline stages present", ", ".join(r.get("stages") or []) or "n/a", ""),
        ("events preloaded (per run)", fmt_num(r.get("events"), "", 0), ""),
        ("machine", f"{machine.get('cores', '?')} cores, {machine.get('cpu', '?')}, Python {machine.get('python', '?')}", ""),
        ("", "", ""),
        ("throughput, 1 worker", fmt_num(r.get("events_per_s"), "ev/s", 0), "first to last output record"),
        ("throughput, 2 workers", fmt_num(r.get("events_per_s_2_workers"), "ev/s", 0),
         f"scaling x{fmt_num(r.get('scaling_2_workers'), '', 2)}"),
        ("worker CPU per event, 1 worker", fmt_num(r.get("cpu_us_per_event"), "us"), "utime+stime / events"),
        ("worker CPU per event, 2 workers", fmt_num(r.get("cpu_us_per_event_2_workers"), "us"), "both workers"),
        ("broker CPU per event", fmt_num(r.get("broker_cpu_us_per_event"), "us"), "1-worker run"),
        ("Redis CPU per event", fmt_num(r.get("redis_cpu_us_per_event"), "us"), "1-worker run"),
        ("", "", ""),
        ("latency p50", fmt_num(r.get("p50_latency_ms"), "ms", 2), f"produce -> {lat.get('observed', '?')}"),
        ("latency p99", ("at least " if lat.get("lower_bound") else "") + fmt_num(r.get("p99_latency_ms"), "ms", 2),
         f"offered {fmt_num(lat.get('offered_per_s'), 'ev/s', 0)}, achieved {fmt_num(lat.get('achieved_per_s'), 'ev/s', 0)}"),
        ("latency p99.9 / max", f"{fmt_num(lat.get('p999_ms'), 'ms', 2)} / {fmt_num(lat.get('max_ms'), 'ms', 2)}",
         f"{fmt_num(lat.get('samples'), 'samples', 0)}, {fmt_num(lat.get('unmatched'), 'unmatched', 0)}"),
        ("", "", ""),
        ("bytes per profile", fmt_num(r.get("bytes_per_profile"), "B", 0), mem.get("profile_method", "")),
        ("bytes per demand key", fmt_num(r.get("bytes_per_demand_key"), "B", 0), mem.get("demand_method", "")),
        ("worker RSS growth per profile", fmt_num(mem.get("rss_bytes_per_profile"), "B", 0),
         f"{fmt_num(mem.get('profiles'), 'profiles', 0)}, {fmt_num(mem.get('demand_keys'), 'demand keys', 0)}"),
        ("Redis bytes per event: dedup window", fmt_num(redis.get("dedup_bytes_per_event"), "B", 0),
         "dedup: + dres: + dw: keys (MEMORY USAGE; docs/performance.md, Capacity)"),
        ("Redis bytes per event: identity graph", fmt_num(redis.get("graph_bytes_per_event"), "B", 0),
         "every other key of the namespace (kept: grows with identifiers)"),
        ("", "", ""),
    ]
    hops = r.get("hops_per_event") or {}
    for topic, value in (hops.get("produced") or {}).items():
        rows.append((f"records per input event: {topic}", fmt_num(value, "", 3), ""))
    rows.append(("records produced per input event", fmt_num(hops.get("produced_total"), "", 3), ""))
    batching = r.get("records_per_produce_batch") or {}
    if batching:
        rows.append(("records per produce batch", "", ", ".join(f"{k} {fmt_num(v, '', 1)}" for k, v in batching.items())))
    rows.append(("agent deliveries per input event", fmt_num(hops.get("consumed_total"), "", 3),
                 ", ".join(f"{k} {fmt_num(v, '', 3)}" for k, v in (hops.get("consumed") or {}).items())))
    rows.append(("framework hops per input event", fmt_num(hops.get("total"), "", 3), "produced + agent deliveries"))
    rows += [
        ("", "", ""),
        ("peer: no-framework reference", fmt_num(reference.get("events_per_s"), "ev/s", 0),
         f"{fmt_num(reference.get('cpu_us_per_event'), 'us CPU/event')}; our stages on plain aiokafka batches"
         + (f" ({reference['error']})" if reference.get("error") else "")),
        ("peer: Quix Streams", fmt_num(quix.get("events_per_s"), "ev/s", 0),
         f"{fmt_num(quix.get('cpu_us_per_event'), 'us CPU/event')}; {quix.get('version') or quix.get('error') or ''}"),
        ("floor: decode + validate only", fmt_num(floor.get("events_per_s"), "ev/s", 0),
         f"{fmt_num(floor.get('cpu_us_per_event'), 'us CPU/event')}; the least any pipeline pays"),
        ("ours / no-framework reference", fmt_num(r.get("ratio_vs_reference"), "x", 2), ""),
        ("ours / decode-only floor", fmt_num(r.get("fraction_of_floor"), "", 3), ""),
        ("ours / Quix Streams", fmt_num(r.get("ratio_vs_quixstreams"), "x", 2), ""),
        ("", "", ""),
    ]
    for name, met in (r.get("targets") or {}).items():
        rows.append((f"target {name}", {True: "met", False: "NOT met", None: "n/a"}[met], ""))
    width = max(len(a) for a, _, _ in rows)
    vwidth = max(len(b) for _, b, _ in rows)
    lines = ["touchpoint bench", "=" * (width + vwidth + 4)]
    for a, b, c in rows:
        lines.append("" if not a else f"{a:<{width}}  {b:>{vwidth}}  {c}".rstrip())
    for note in r.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)
