"""Offline runner: the streaming detector + lifecycle over a ``timestamp,value`` CSV.

Each row is one bucket of the series' own spacing (no re-bucketing: NAB values
such as speeds are not additive). The bucket size is inferred causally as the
median of the first ``WARMUP_ROWS`` time deltas; those warm-up rows are learned
and always output ``alert=0``, so the output for any prefix of the input is
the prefix of the output.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from .detector import DetectorConfig
from .lifecycle import ESCALATE, OPEN, DemandMonitor, LifecycleConfig

__all__ = ["WARMUP_ROWS", "parse_timestamp", "read_series", "infer_bucket_s", "detect_csv"]

#: Rows used to infer the bucket size; they always output alert=0.
WARMUP_ROWS = 25

_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_timestamp(text: str, tz: str = "UTC") -> int:
    """Epoch ms of a timestamp; naive ones are wall-clock time in ``tz``."""
    s = text.strip()
    dt: datetime | None = None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        for fmt in _FORMATS:
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
    if dt is None:
        raise ValueError(f"unparseable timestamp {text!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC if tz == "UTC" else ZoneInfo(tz))
    return int(round(dt.timestamp() * 1000))


def _lines(path_or_lines: str | Path | Iterable[str]) -> Iterator[str]:
    if isinstance(path_or_lines, (str, Path)):
        with open(path_or_lines, encoding="utf-8") as fh:
            yield from fh
    else:
        yield from path_or_lines


def read_series(path_or_lines: str | Path | Iterable[str], tz: str = "UTC") -> Iterator[tuple[int, str, str, float]]:
    """Yield ``(ts_ms, timestamp_text, value_text, value)`` rows of a CSV.

    A header line is allowed as the first non-blank line. Raises ValueError
    naming the line number on malformed rows or timestamps going backwards.
    """
    prev: int | None = None
    seen_data = False
    for lineno, raw in enumerate(_lines(path_or_lines), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if not seen_data and prev is None and parts and parts[0].lower() in ("timestamp", "time", "ts", "date"):
            seen_data = True  # header
            continue
        seen_data = True
        if len(parts) != 2:
            raise ValueError(f"line {lineno}: expected 2 fields 'timestamp,value', got {len(parts)}")
        try:
            ts = parse_timestamp(parts[0], tz)
        except ValueError as exc:
            raise ValueError(f"line {lineno}: {exc}") from None
        try:
            value = float(parts[1])
        except ValueError:
            raise ValueError(f"line {lineno}: value {parts[1]!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"line {lineno}: value {parts[1]!r} is not finite")
        if prev is not None and ts < prev:
            raise ValueError(f"line {lineno}: timestamp {parts[0]!r} goes back in time")
        prev = ts
        yield ts, parts[0], parts[1], value


def infer_bucket_s(ts_ms: list[int]) -> int:
    """Bucket size in seconds: median positive delta between timestamps (>= 1 s)."""
    deltas = [b - a for a, b in zip(ts_ms, ts_ms[1:], strict=False) if b > a]
    if not deltas:
        return 300
    return max(1, int(round(statistics.median(deltas) / 1000.0)))


def detect_csv(
    path_or_lines: str | Path | Iterable[str],
    out: IO[str] | None = None,
    config: DetectorConfig | None = None,
    lifecycle: LifecycleConfig | None = None,
    key: str = "series",
    bucket_s: int | None = None,
) -> list[int]:
    """Run detector + lifecycle over a CSV; write ``timestamp,value,alert`` rows to ``out``.

    alert=1 where an alert opens or escalates. ``bucket_s`` (default: inferred
    from the first rows) overrides ``config.bucket_s``; the lifecycle's
    NEW_NORMAL horizon defaults to one day of buckets. Returns the alert column.
    """
    base = config or DetectorConfig()
    rows = read_series(path_or_lines, base.tz)
    if out is not None:
        out.write("timestamp,value,alert\n")
    alerts: list[int] = []
    warm: list[tuple[int, str, str, float]] = []
    monitor: DemandMonitor | None = None

    def emit(text_ts: str, text_v: str, flag: int) -> None:
        alerts.append(flag)
        if out is not None:
            out.write(f"{text_ts},{text_v},{flag}\n")

    def start() -> DemandMonitor:
        size = bucket_s if bucket_s is not None else infer_bucket_s([r[0] for r in warm])
        cfg = replace(base, bucket_s=size)
        lc = lifecycle or LifecycleConfig(new_normal_buckets=max(2, 86400 // size))
        mon = DemandMonitor(key, "", cfg, lc)
        for ts, _, _, v in warm:
            mon.update(ts, v)
        return mon

    for row in rows:
        if monitor is None:
            warm.append(row)
            emit(row[1], row[2], 0)
            if len(warm) > WARMUP_ROWS:
                monitor = start()
            continue
        ts, text_ts, text_v, value = row
        _, records = monitor.update(ts, value)
        flag = int(any(r.state in (OPEN, ESCALATE) for r in records))
        emit(text_ts, text_v, flag)
    return alerts
