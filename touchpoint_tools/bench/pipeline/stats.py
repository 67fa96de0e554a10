"""Percentiles and rates (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "summarize", "rate", "ratio"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default method); ``None`` for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([5], 99)
    5.0
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return float(data[lo] + (data[hi] - data[lo]) * frac)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, p50, p90, p99, p99.9 and max of a sample."""
    return {
        "count": len(values),
        "min": float(min(values)) if values else None,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "p999": percentile(values, 99.9),
        "max": float(max(values)) if values else None,
    }


def rate(count: int, seconds: float) -> float | None:
    """``count / seconds``, or ``None`` when the interval is not positive."""
    return count / seconds if seconds > 0 else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` when both are known and ``b`` is positive."""
    if a is None or b is None or b <= 0:
        return None
    return a / b
