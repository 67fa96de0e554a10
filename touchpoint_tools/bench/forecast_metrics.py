"""M4 accuracy measures (MASE, sMAPE, interval coverage, MSIS) and the data readers of the
forecast benchmark (touchpoint_tools/bench/forecast_m4.py). Plain Python, no numpy: also imported by tests."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

__all__ = ["read_m4", "mase_scale", "score", "seasonal_naive"]


def read_m4(train: Path, test: Path) -> list[tuple[str, list[float], list[float]]]:
    """``(id, history, future)`` per series of an M4 train/test pair (trailing cells empty)."""

    def rows(path: Path) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            for row in reader:
                out[row[0]] = [float(x) for x in row[1:] if x.strip()]
        return out

    hist, fut = rows(train), rows(test)
    return [(sid, hist[sid], fut[sid]) for sid in hist]


def mase_scale(history: Sequence[float], m: int) -> float:
    """In-sample mean |y[t] - y[t-m]| (M4's MASE denominator)."""
    diffs = [abs(history[i] - history[i - m]) for i in range(m, len(history))]
    return sum(diffs) / len(diffs) if diffs else 1.0


def score(history: Sequence[float], actual: Sequence[float], mean: Sequence[float],
          lo95: Sequence[float], hi95: Sequence[float], lo80: Sequence[float], hi80: Sequence[float],
          m: int = 24) -> dict[str, float]:
    """Per-series MASE, sMAPE, 95 % / 80 % coverage and MSIS (alpha = 0.05), M4 definitions."""
    scale = mase_scale(history, m) or 1e-9
    h = len(actual)
    mae = sum(abs(a - f) for a, f in zip(actual, mean, strict=True)) / h
    smape = sum(200.0 * abs(a - f) / (abs(a) + abs(f)) if abs(a) + abs(f) > 0 else 0.0
                for a, f in zip(actual, mean, strict=True)) / h
    cov95 = sum(lo <= a <= hi for a, lo, hi in zip(actual, lo95, hi95, strict=True)) / h
    cov80 = sum(lo <= a <= hi for a, lo, hi in zip(actual, lo80, hi80, strict=True)) / h
    alpha = 0.05
    msis = sum((hi - lo) + 2 / alpha * max(lo - a, 0.0) + 2 / alpha * max(a - hi, 0.0)
               for a, lo, hi in zip(actual, lo95, hi95, strict=True)) / h / scale
    return {"mase": mae / scale, "smape": smape, "cov95": cov95, "cov80": cov80, "msis": msis}


def seasonal_naive(history: Sequence[float], h: int, m: int = 24) -> tuple[list[float], ...]:
    """Seasonal naive forecast with the textbook normal intervals:
    sd_h = sd(in-sample seasonal differences) * sqrt(k + 1), k = floor((h - 1) / m)."""
    res = [history[i] - history[i - m] for i in range(m, len(history))]
    sd = math.sqrt(sum(r * r for r in res) / max(len(res), 1))
    mean, lo95, hi95, lo80, hi80 = [], [], [], [], []
    for step in range(1, h + 1):
        f = history[len(history) - m + (step - 1) % m]
        s = sd * math.sqrt((step - 1) // m + 1)
        mean.append(f)
        lo95.append(f - 1.96 * s)
        hi95.append(f + 1.96 * s)
        lo80.append(f - 1.2816 * s)
        hi80.append(f + 1.2816 * s)
    return mean, lo95, hi95, lo80, hi80
