"""Seeded synthetic weekly-seasonal count series for the demand tests."""

from __future__ import annotations

import math
import random

from touchpoint_tools.simulate.sampling import poisson

HOUR_MS = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a Monday


def weekly_mean(i: int, scale: float = 100.0) -> float:
    """Expected count of hourly bucket i: daily cycle, quieter weekends."""
    hour, day = i % 24, (i // 24) % 7
    daily = 1.0 + 0.8 * math.sin((hour - 6) / 24 * 2 * math.pi)
    return scale * daily * (0.6 if day >= 5 else 1.0)


def series(weeks: int, seed: int, scale: float = 100.0) -> list[tuple[int, int]]:
    """(ts_ms, count) hourly buckets."""
    rng = random.Random(seed)
    return [(T0 + i * HOUR_MS, poisson(rng, weekly_mean(i, scale))) for i in range(weeks * 168)]
