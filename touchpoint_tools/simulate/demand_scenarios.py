"""Seeded demand series with ground-truth shifts, and how well alerts match them (pure, no Kafka).

What real order streams look like, decided once and not tuned to the detector: hourly buckets in
local time (Asia/Shanghai), a daily cycle with a night trough, a lunch and an evening peak (each
key's peaks moved by up to an hour, its amplitudes by +-30 %), a weekend effect between -25 % and
+35 %, day-to-day level drift (AR(1), 5 %), a monthly trend within +-5 %, and overdispersed counts
(gamma-Poisson, overdispersion 0.005-0.03). Four weeks of history precede a two-week evaluation
window in which the shifts start.

Shift kinds (ground truth), each a multiplier of the rate:

* ``surge_persistent`` x1.6-3 and ``collapse_persistent`` x0.3-0.6 from the onset to the end
  (onset in the first week of the window, so at least a week remains): must end NEW_NORMAL;
* ``surge_transient`` x2-5 for 6-48 h, ``collapse_transient`` x0.2-0.5 for 12-48 h and
  ``holiday`` (a shopping day: from 08:00 local for 12-16 h, x2.5-4): must end RESOLVED within
  two days of their end;
* ``ramp``: from x1 to x1.6-2.2 linearly over 5-8 days, then held (spending coming back): a
  persistent shift;
* ``control``: no shift; every alert on it is false.

:func:`evaluate` scores alert records against the truth; :func:`run_set` drives one
:class:`~streams.demand.lifecycle.DemandMonitor` per key with the live stage's configuration.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

from touchpoint_tools.simulate.sampling import poisson

__all__ = ["KINDS", "VOLUMES", "Shift", "KeySeries", "make_set", "run_set", "evaluate", "learning_opens", "summarise"]

HOUR_MS = 3_600_000
DAY_H = 24
START_MS = int(datetime(2026, 2, 2, tzinfo=UTC).timestamp() * 1000) - 8 * HOUR_MS  # Mon 00:00 in UTC+8
HISTORY_DAYS = 28
EVAL_DAYS = 14
VOLUMES = {"low": 4.0, "medium": 40.0, "high": 400.0}  # orders per hour, daily mean
KINDS = ("surge_persistent", "collapse_persistent", "surge_transient", "collapse_transient", "ramp", "holiday")
PERSISTENT = {"surge_persistent", "collapse_persistent", "ramp"}
TZ_OFFSET_H = 8


@dataclass(frozen=True)
class Shift:
    """Ground truth of one shift (hours from the series start; ``end`` None = to the end)."""

    kind: str
    direction: int
    onset: int
    end: int | None
    factor: float
    ramp_h: int = 0

    def multiplier(self, hour: int) -> float:
        if hour < self.onset or (self.end is not None and hour >= self.end):
            return 1.0
        if self.ramp_h:
            return 1.0 + (self.factor - 1.0) * min(1.0, (hour - self.onset + 1) / self.ramp_h)
        return self.factor

    @property
    def persistent(self) -> bool:
        return self.kind in PERSISTENT

    def window_end(self, hours: int) -> int:
        """Last hour an alert in its direction still belongs to this shift."""
        if self.end is not None:
            return self.end + 2 * DAY_H
        return min(hours, self.onset + self.ramp_h + 7 * DAY_H)


@dataclass
class KeySeries:
    key: str
    volume: str
    kind: str
    counts: list[int]
    shift: Shift | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _shape(rng: random.Random) -> Callable[[int], float]:
    """Relative rate of a local hour of the week for one key (mean 1 over a week)."""
    lunch, evening = 11.5 + rng.uniform(-1, 1), 20.5 + rng.uniform(-1, 1)
    a_lunch, a_eve, a_aft = 0.5 * rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3), 0.25 * rng.uniform(0.7, 1.3)
    weekend = rng.uniform(0.75, 1.35)

    def raw(h: int) -> float:
        hour, day = h % 24, (h // 24) % 7
        daily = (0.12 + a_lunch * math.exp(-((hour - lunch) ** 2) / 6) + a_eve * math.exp(-((hour - evening) ** 2) / 5)
                 + a_aft * math.exp(-((hour - 15) ** 2) / 8))
        week = weekend if day >= 5 else (1 + (weekend - 1) / 3 if day == 4 else 1.0)
        return daily * week

    norm = sum(raw(h) for h in range(168)) / 168
    return lambda h: raw(h) / norm


def _shift(kind: str, rng: random.Random, hours: int) -> Shift:
    first = HISTORY_DAYS * DAY_H
    if kind in ("surge_persistent", "collapse_persistent"):
        onset = first + rng.randrange(7 * DAY_H)
        factor = rng.uniform(1.6, 3.0) if kind.startswith("surge") else rng.uniform(0.3, 0.6)
        return Shift(kind, 1 if factor > 1 else -1, onset, None, factor)
    if kind == "ramp":
        onset = first + rng.randrange(3 * DAY_H)
        return Shift(kind, 1, onset, None, rng.uniform(1.6, 2.2), ramp_h=rng.randint(5, 8) * DAY_H)
    if kind == "holiday":
        day = rng.randrange(EVAL_DAYS - 3)
        onset = first + day * DAY_H + 8  # 08:00 local
        return Shift(kind, 1, onset, onset + rng.randint(12, 16), rng.uniform(2.5, 4.0))
    length = rng.randint(6, 48) if kind == "surge_transient" else rng.randint(12, 48)
    onset = first + rng.randrange((EVAL_DAYS - 4) * DAY_H)
    factor = rng.uniform(2.0, 5.0) if kind == "surge_transient" else rng.uniform(0.2, 0.5)
    return Shift(kind, 1 if factor > 1 else -1, onset, min(onset + length, hours), factor)


def _series(rng: random.Random, mean: float, shift: Shift | None, hours: int) -> list[int]:
    shape = _shape(rng)
    overdispersion = rng.uniform(0.005, 0.03)
    trend = rng.uniform(-0.05, 0.05) / (30 * DAY_H)
    day_level, out = 0.0, []
    for h in range(hours):
        if h % DAY_H == 0:
            day_level = 0.5 * day_level + rng.gauss(0.0, 0.05)
        lam = mean * shape(h) * math.exp(day_level) * (1 + trend * h) * (shift.multiplier(h) if shift else 1.0)
        lam *= rng.gammavariate(1 / overdispersion, overdispersion)
        out.append(poisson(rng, lam))
    return out


def make_set(seed: int, per_kind: int = 2, controls: int = 4, volumes: tuple[str, ...] = tuple(VOLUMES)) -> list[KeySeries]:
    """One scenario set: per volume, ``per_kind`` keys of each shift kind and ``controls`` keys
    without a shift; hourly counts from the series start (local Monday 00:00)."""
    rng = random.Random(seed)
    hours = (HISTORY_DAYS + EVAL_DAYS) * DAY_H
    out = []
    for volume in volumes:
        for kind in (*KINDS, "control"):
            for i in range(controls if kind == "control" else per_kind):
                shift = None if kind == "control" else _shift(kind, rng, hours)
                out.append(KeySeries(f"product:{volume}-{kind}-{i}", volume, kind, _series(rng, VOLUMES[volume], shift, hours), shift))
    return out


def run_set(series: list[KeySeries], monitor_factory: Callable[[str], Any], bucket_s: int = 3600, seed: int = 0) -> None:
    """Feed every key's buckets to its own monitor, in time order; alert records land on the key.

    ``bucket_s`` below an hour (a divisor of it) spreads each hour's orders uniformly at random
    over its buckets (seeded): the same demand, watched at a finer grain."""
    per = HOUR_MS // (bucket_s * 1000)
    if per < 1 or per * bucket_s * 1000 != HOUR_MS:
        raise ValueError(f"bucket_s {bucket_s}: must divide an hour")
    rng = random.Random(seed)
    for ks in series:
        mon = monitor_factory(ks.key)
        for h, n in enumerate(ks.counts):
            parts = [n] if per == 1 else _spread(rng, n, per)
            for i, part in enumerate(parts):
                _, records = mon.update(START_MS + h * HOUR_MS + i * bucket_s * 1000, part)
                ks.alerts.extend(r.to_dict() for r in records)


def _spread(rng: random.Random, n: int, parts: int) -> list[int]:
    out = [0] * parts
    for _ in range(n):
        out[rng.randrange(parts)] += 1
    return out


def _hour(iso: str) -> int:
    return (int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) - START_MS) // HOUR_MS


@dataclass
class Outcome:
    key: str
    volume: str
    kind: str
    detected: bool
    delay_h: int | None
    lifecycle_right: bool
    ends: list[str]


def evaluate(series: list[KeySeries]) -> tuple[list[Outcome], int, float]:
    """(per-shift outcomes, false OPENs, key-days in the evaluation window)."""
    hours = (HISTORY_DAYS + EVAL_DAYS) * DAY_H
    first = HISTORY_DAYS * DAY_H
    outcomes, false_opens = [], 0
    for ks in series:
        final: dict[str, tuple[str, int]] = {}
        for a in ks.alerts:
            if a["state"] in ("RESOLVED", "NEW_NORMAL"):
                final[a["alert_id"]] = (a["state"], _hour(a["bucket_start"]))
        opens = [(a, _hour(a["bucket_start"])) for a in ks.alerts if a["state"] == "OPEN"]
        s = ks.shift
        mine = []
        for a, h in opens:
            matches = s is not None and (a["direction"] == "surge") == (s.direction > 0) and s.onset <= h <= s.window_end(hours)
            # An alert in the shift's direction that was open when the shift began covers it too.
            already = (s is not None and (a["direction"] == "surge") == (s.direction > 0) and h < s.onset
                       and final.get(a["alert_id"], ("", hours))[1] >= s.onset)
            if matches or already:
                mine.append((a, max(h - s.onset, 0) if s else 0))
            elif h >= first:
                false_opens += 1
        if s is None:
            continue
        ends = [final.get(a["alert_id"], ("OPEN", hours)) for a, _ in mine]
        if s.persistent:
            right = bool(mine) and all(state == "NEW_NORMAL" for state, _ in ends)
        else:
            right = bool(mine) and all(state == "RESOLVED" for state, _ in ends) and max(h for _, h in ends) <= s.end + 2 * DAY_H  # type: ignore[operator]
        detect_by = s.end if s.end is not None else s.onset + s.ramp_h + 7 * DAY_H
        first_hit = min((d for (a, d) in mine if s.onset + d <= detect_by), default=None)
        outcomes.append(Outcome(ks.key, ks.volume, ks.kind, first_hit is not None, first_hit, right, [e for e, _ in ends]))
    return outcomes, false_opens, len(series) * EVAL_DAYS


def learning_opens(series: list[KeySeries], quiet_days: int = 2) -> tuple[int, float]:
    """(OPENs published in the history weeks, key-days there): every one is false, since no
    shift starts before the scored weeks. The first ``quiet_days`` raise nothing by design (no
    alert without two days of history) and are not counted as key-days. A key's first weeks
    are when it is learned: a rule that misfires only then (a week-on-week test comparing with a
    cold first day) shows here and nowhere in the scored weeks."""
    first = HISTORY_DAYS * DAY_H
    opens = sum(1 for ks in series for a in ks.alerts if a["state"] == "OPEN" and _hour(a["bucket_start"]) < first)
    return opens, float(len(series) * (HISTORY_DAYS - quiet_days))


def _pct(values: list[int], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def summarise(outcomes: list[Outcome], false_opens: int, key_days: float) -> dict[str, Any]:
    """The benchmark's figures: share detected, median / p90 delay (hours = buckets here), share
    with the right lifecycle end, false OPENs per 100 key-days."""
    delays = [o.delay_h for o in outcomes if o.delay_h is not None]
    return {
        "shifts": len(outcomes),
        "detected": sum(o.detected for o in outcomes) / max(1, len(outcomes)),
        "median_delay_h": median(delays) if delays else None,
        "p90_delay_h": _pct(delays, 0.9) if delays else None,
        "lifecycle_right": sum(o.lifecycle_right for o in outcomes) / max(1, len(outcomes)),
        "false_opens": false_opens,
        "key_days": key_days,
        "false_per_100_key_days": 100.0 * false_opens / max(key_days, 1e-9),
    }
