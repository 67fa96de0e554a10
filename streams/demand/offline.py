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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from .detector import Decision, DetectorConfig
from .lifecycle_config import ESCALATE, OPEN, LifecycleConfig
from .monitor import DemandMonitor
from .stage_config import StageConfig

__all__ = ["WARMUP_ROWS", "HEADER", "SeriesStats", "Row", "parse_timestamp", "read_series", "infer_bucket_s", "detect_csv"]

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


_HEADER_NAMES = ("timestamp", "time", "ts", "date", "datetime")


@dataclass
class SeriesStats:
    """What :func:`read_series` / :func:`detect_csv` saw besides the rows they used.

    back_in_time: rows whose timestamp was not later than the previous used row
    (skipped: output with alert 0 and no baseline, the detector goes on).
    """

    rows: int = 0
    back_in_time: int = 0
    first_back_line: int = 0


@dataclass(frozen=True)
class Row:
    """One data row: epoch ms, the timestamp and value as written, the value, whether it is used."""

    ts_ms: int
    text_ts: str
    text_value: str
    value: float
    skipped: bool = False


def _value_column(header: list[str] | None, measure: str | None, lineno: int) -> int:
    if measure is None:
        if header is not None and len(header) != 2:
            raise ValueError(
                f"line {lineno}: {len(header)} columns ({','.join(header)}); choose the value column with --measure"
            )
        return 1
    if header is None:
        raise ValueError(f"line {lineno}: --measure {measure!r} needs a header line naming the columns")
    if measure not in header[1:]:
        raise ValueError(f"line {lineno}: no column {measure!r} in the header ({','.join(header)})")
    return header.index(measure)


def read_series(
    path_or_lines: str | Path | Iterable[str],
    tz: str = "UTC",
    measure: str | None = None,
    stats: SeriesStats | None = None,
) -> Iterator[Row]:
    """Yield the data rows of a ``timestamp,value`` CSV (or ``timestamp,...`` with ``measure``).

    A header line is allowed as the first non-blank line (its first field
    ``timestamp``/``time``/``ts``/``date``/``datetime``); it is required with
    ``measure``, which names the value column. Raises ValueError naming the
    line on malformed rows, timestamps or values. A row whose timestamp is not
    later than the last used row's is yielded with ``skipped=True`` and
    counted in ``stats`` (real feeds have such rows; they never stop the run).
    """
    stats = stats if stats is not None else SeriesStats()
    prev: int | None = None
    header: list[str] | None = None
    col: int | None = None
    for lineno, raw in enumerate(_lines(path_or_lines), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if col is None:
            if parts[0].lower() in _HEADER_NAMES:
                header = parts
                col = _value_column(header, measure, lineno)
                continue
            col = _value_column(None, measure, lineno)
        width = len(header) if header is not None else 2
        if len(parts) != width:
            raise ValueError(f"line {lineno}: expected {width} fields, got {len(parts)}")
        try:
            ts = parse_timestamp(parts[0], tz)
        except ValueError as exc:
            raise ValueError(f"line {lineno}: {exc}") from None
        text = parts[col]
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"line {lineno}: value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"line {lineno}: value {text!r} is not finite")
        stats.rows += 1
        if prev is not None and ts <= prev:
            stats.back_in_time += 1
            stats.first_back_line = stats.first_back_line or lineno
            yield Row(ts, parts[0], text, value, True)
            continue
        prev = ts
        yield Row(ts, parts[0], text, value)


def infer_bucket_s(ts_ms: list[int]) -> int:
    """Bucket size in seconds: median positive delta between timestamps (>= 1 s)."""
    deltas = [b - a for a, b in zip(ts_ms, ts_ms[1:], strict=False) if b > a]
    if not deltas:
        return 300
    return max(1, int(round(statistics.median(deltas) / 1000.0)))


HEADER = "timestamp,value,alert,event,direction,expected,lower,upper"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def detect_csv(
    path_or_lines: str | Path | Iterable[str],
    out: IO[str] | None = None,
    config: DetectorConfig | None = None,
    lifecycle: LifecycleConfig | None = None,
    key: str = "series",
    bucket_s: int | None = None,
    measure: str | None = None,
    stats: SeriesStats | None = None,
    live: tuple[StageConfig, str] | None = None,
) -> list[int]:
    """Run detector + lifecycle over a CSV; write one output row per input row to ``out``.

    Columns: ``timestamp,value,alert,event,direction,expected,lower,upper``.
    alert=1 where an alert opens or escalates; event = the lifecycle records
    of that row joined with ``+``; direction = surge/collapse on those rows;
    expected and its 95% band ``lower``/``upper`` as the detector saw them
    before the row (empty while it has no baseline). ``bucket_s`` (default:
    inferred from the first rows) overrides ``config.bucket_s``; the
    lifecycle's NEW_NORMAL horizon defaults to one day of buckets. Returns the
    alert column; ``stats`` receives the row counts (rows going back in time).
    Raises ValueError on bad input and when there is no data row.

    ``live=(stage_config, measure)`` judges the rows as the live demand stage judges that
    measure instead (``touchpoint detect --live``): its detector in the stage's time zone (naive
    timestamps are read in it too), and its lifecycle with the measure's volume rule, the
    baseline frozen at OPEN and NEW_NORMAL after three days, at the CSV's own bucket size.
    ``config`` and ``lifecycle`` are then not used.
    """
    base = live[0].detector_config() if live is not None else (config or DetectorConfig())
    stats = stats if stats is not None else SeriesStats()
    rows = read_series(path_or_lines, base.tz, measure, stats)
    alerts: list[int] = []
    warm: list[Row] = []
    monitor: DemandMonitor | None = None

    def emit(row: Row, flag: int, event: str = "", direction: str = "", d: Decision | None = None) -> None:
        alerts.append(flag)
        if out is not None:
            if len(alerts) == 1:
                out.write(HEADER + "\n")
            band = (d.expected, d.lower, d.upper) if d is not None else (None, None, None)
            out.write(
                f"{row.text_ts},{row.text_value},{flag},{event},{direction},"
                f"{_num(band[0])},{_num(band[1])},{_num(band[2])}\n"
            )

    def start() -> DemandMonitor:
        size = bucket_s if bucket_s is not None else infer_bucket_s([r.ts_ms for r in warm])
        cfg = replace(base, bucket_s=size)
        if live is not None:
            stage, live_measure = live
            lc = replace(stage, bucket_s=size).lifecycle_config(live_measure)
        else:
            live_measure = ""
            lc = lifecycle or LifecycleConfig(new_normal_buckets=max(2, 86400 // size))
        mon = DemandMonitor(key, "", cfg, lc, live_measure)
        for r in warm:
            mon.update(r.ts_ms, r.value)
        return mon

    for row in rows:
        if row.skipped:
            emit(row, 0)
            continue
        if monitor is None:
            warm.append(row)
            emit(row, 0)
            if len(warm) > WARMUP_ROWS:
                monitor = start()
            continue
        decision, records = monitor.update(row.ts_ms, row.value)
        flag = int(any(r.state in (OPEN, ESCALATE) for r in records))
        event = "+".join(r.state for r in records)
        direction = "+".join(dict.fromkeys(r.direction for r in records))
        emit(row, flag, event, direction, decision)
    if stats.rows == 0:
        raise ValueError("no data rows")
    return alerts
