"""Offline runner of the streaming forecaster over one ``timestamp,value`` series.

The rows are read with :func:`streams.demand.offline.read_series` (the reader ``detect`` uses)
and the spacing is inferred the same way (median delta of the first rows). The forecaster learns
every row in order, exactly as it would live, then forecasts the ``horizon`` steps after the last
row. ``touchpoint_tools/bench/forecast_m4.py`` scores this very function, so the benchmark and
``touchpoint forecast --csv`` are the same model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from .buckets import WEEK_S, _zone, iso_utc
from .forecast import ForecastConfig, Forecaster, ForecastPoint
from .offline import WARMUP_ROWS, infer_bucket_s, read_series

__all__ = ["MIN_ROWS", "forecast_config", "forecast_series", "forecast_csv"]

#: Fewest rows a forecast is made from (one full day of hourly values is better; this is the floor).
MIN_ROWS = 3


def forecast_config(step_s: int, tz: str = "UTC") -> ForecastConfig:
    """The one configuration for a series of spacing ``step_s``: horizons up to 7 days."""
    return ForecastConfig(step_s=step_s, tz=tz, max_horizon=max(1, WEEK_S // step_s))


def forecast_series(ts_ms: list[int], values: list[float], horizon: int, tz: str = "UTC",
                    step_s: int | None = None) -> list[ForecastPoint]:
    """Learn the series in order, then forecast ``horizon`` steps after its last row."""
    if len(ts_ms) != len(values):
        raise ValueError("timestamps and values differ in length")
    if len(values) < MIN_ROWS:
        raise ValueError(f"too few rows: {len(values)} (at least {MIN_ROWS} needed)")
    if step_s is None and ts_ms[-1] <= ts_ms[0]:
        raise ValueError("timestamps do not advance: every row has the same time, so the spacing is unknown")
    step = step_s or infer_bucket_s(ts_ms[: WARMUP_ROWS + 1])
    cfg = forecast_config(step, tz)
    if not 1 <= horizon <= cfg.max_horizon:
        raise ValueError(f"horizon must be between 1 and {cfg.max_horizon} (7 days of {step} s steps)")
    model = Forecaster(cfg)
    for ts, v in zip(ts_ms, values, strict=True):
        model.learn_one(ts, v)
    return model.forecast(horizon)


def _formatter(sample: str, tz: str):  # noqa: ANN202 - a small closure
    text = sample.strip()
    if text.endswith("Z") or "+" in text[10:] or text[10:].count("-") > 0:
        return iso_utc
    fmt = "%Y-%m-%dT%H:%M:%S" if "T" in text else "%Y-%m-%d %H:%M:%S"
    zone = _zone(tz)
    return lambda ms: datetime.fromtimestamp(ms / 1000.0, tz=zone).strftime(fmt)


#: Header first cells accepted besides the ones ``read_series`` knows (timestamp, time, ts, date).
_MORE_HEADERS = ("ds", "datetime")


def _lines(path_or_lines: str | Path | Iterable[str]) -> Iterator[str]:
    """The rows, with a ``ds,y``-style header (common in forecasting tools) dropped."""
    lines: Iterable[str]
    if isinstance(path_or_lines, (str, Path)):
        with open(path_or_lines, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    else:
        lines = path_or_lines
    first = True
    for line in lines:
        if first and line.strip():
            first = False
            if line.lstrip("\ufeff").split(",")[0].strip().lower() in _MORE_HEADERS:
                continue
            line = line.lstrip("\ufeff")
        yield line


def forecast_csv(path_or_lines: str | Path | Iterable[str], horizon: int, out: IO[str], tz: str = "UTC") -> int:
    """Read a CSV, write ``timestamp,forecast,lo80,hi80,lo95,hi95`` rows; return rows written.

    Output timestamps follow the input's style (naive wall-clock text in ``tz``, or UTC ``Z``).
    Raises ValueError (a one-line reason) on bad input.
    """
    ts: list[int] = []
    values: list[float] = []
    last_text = ""
    for row in read_series(_lines(path_or_lines), tz):
        if row.skipped:  # went back in time: left out, as `detect` does
            continue
        ts.append(row.ts_ms)
        values.append(row.value)
        last_text = row.text_ts
    points = forecast_series(ts, values, horizon, tz)
    fmt = _formatter(last_text, tz)
    out.write("timestamp,forecast,lo80,hi80,lo95,hi95\n")
    for t, mean, lo80, hi80, lo95, hi95 in points:
        out.write(f"{fmt(t)},{mean:.10g},{lo80:.10g},{hi80:.10g},{lo95:.10g},{hi95:.10g}\n")
    return len(points)
