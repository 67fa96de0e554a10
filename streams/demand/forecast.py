"""Streaming demand forecaster per key and measure: pure, bounded, O(1) per update.

:class:`Forecaster` learns one closed bucket at a time (``learn_one(ts_ms, value)``) and answers
``forecast(horizon)`` with ``(ts_ms, mean, lo80, hi80, lo95, hi95)`` per future bucket.

**Point model.** A combination of seasonal profiles on the local wall clock of the configured
zone (:func:`~streams.demand.buckets.local_slot`, so 09:00 stays 09:00 across DST). Each
component ``(period, beta)`` keeps one value per time-of-day or time-of-week slot, an
exponentially weighted mean of the values seen in that slot (``beta = 1``: the last one, i.e.
seasonal naive), plus a slowly learned bias (its mean one-step error: a level that drifted since
the profile was learned). The defaults are the last day, a smoothed day and a smoothed week. The
components' forecasts are combined with weights ``1 / mse^2`` (``weight_power``), ``mse`` each
component's recent squared one-step error, so a component that fits clearly better dominates
without the others being dropped. The one-step residual of the combination carries over with a
learned AR(1) coefficient that decays with the horizon. Innovations are clipped at ``clip`` one-step
mean absolute errors so one spike does not move the profiles much.

**Intervals** come from the model's own out-of-sample errors (:mod:`streams.demand.intervals`):
at a few anchor horizons the forecast made ``h`` buckets ago is compared with what arrived; per
anchor the mean absolute error sets the band's width, and four quantiles of the error relative
to that width, pooled over the anchors, set its shape (online pinball-loss steps, as in adaptive
conformal inference), so the 80 % / 95 % bands keep their coverage as the series changes.
Horizons between anchors interpolate. Counts (a series never seen below 0) never get a
negative forecast or bound.

**Alert lifecycle.** ``shift`` is set by the caller while an alert is open (+1 surge, -1
collapse, :meth:`set_shift`): learning then uses a small weight (a shift is not the season, and
the noise scale is not learned from it); :meth:`rebaseline` (NEW_NORMAL) scales the profiles by
observed/expected over the shift at once, and ``forecast(h, hold_shift=True)`` answers "what if
the shift holds".

State is fixed by the configuration: for hourly steps 24 + 24 + 168 profile slots and their
seen flags, the interval tracker (one pending forecast per anchor step: 367 for anchors up to
168, a width and 4 shape quantiles per anchor) and ~15 scalars: about 10 KB as JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .buckets import DAY_S, WEEK_S, local_slot
from .intervals import HorizonIntervals

__all__ = ["ForecastConfig", "Forecaster", "ForecastPoint"]

_VERSION = 1

#: ``(ts_ms, mean, lo80, hi80, lo95, hi95)``
ForecastPoint = tuple[int, float, float, float, float, float]


@dataclass(frozen=True)
class ForecastConfig:
    """One configuration for all series (the same for M4, nyc_taxi and the live keys).

    step_s: the bucket spacing the forecaster is fed at. slot_s: seasonal slot length (at least
    the step; default max(step, 30 min), so 5-min buckets share 30-min slots, as the detector's).
    components: the seasonal profiles combined, ``(period, beta)``: period ``"day"`` or
    ``"week"``, beta the weight of the newest value in a slot's mean (1 = seasonal naive).
    """

    step_s: int = 3600
    tz: str = "UTC"
    slot_s: int = 0  # 0 = max(step_s, 1800)
    components: tuple[tuple[str, float], ...] = (("day", 1.0), ("day", 0.15), ("week", 0.5))
    bias_alpha: float = 0.02
    err_alpha: float = 0.02
    weight_power: float = 2.0
    level_alpha: float = 0.05
    scale_alpha: float = 0.02
    ar_alpha: float = 0.02
    ar_max: float = 0.95
    clip: float = 5.0
    shift_weight: float = 0.1
    max_horizon: int = 168

    def __post_init__(self) -> None:
        if self.step_s <= 0:
            raise ValueError("step_s must be positive")
        if self.slot_s < 0:
            raise ValueError("slot_s must be >= 0")
        if self.max_horizon < 1:
            raise ValueError("max_horizon must be >= 1")
        for period, beta in self.components:
            if period not in ("day", "week") or not 0.0 < beta <= 1.0:
                raise ValueError(f"bad component {(period, beta)!r}")

    @property
    def slot(self) -> int:
        return max(self.slot_s or max(self.step_s, 1800), self.step_s)

    @property
    def day_slots(self) -> int:
        return max(1, DAY_S // self.slot)

    @property
    def week_slots(self) -> int:
        return max(1, WEEK_S // self.slot)


class Forecaster:
    """One series: ``learn_one`` per closed bucket, ``forecast`` on demand (see module doc)."""

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = c = config or ForecastConfig()
        self._week = [period == "week" for period, _ in c.components]
        self._betas = [beta for _, beta in c.components]
        self.n = 0
        self.last_ms: int | None = None
        self.level = 0.0
        self.prof = [[0.0] * (c.week_slots if wk else c.day_slots) for wk in self._week]
        self.seen = [[0] * (c.week_slots if wk else c.day_slots) for wk in self._week]
        self.bias = [0.0] * len(c.components)
        self.err = [0.0] * len(c.components)
        self.scale = 0.0  # EWMA of |one-step error|
        self.resid = 0.0  # last one-step residual of the combination (before AR)
        self.ar_xy = 0.0
        self.ar_xx = 0.0
        self.min_value = math.inf
        self.shift = 0  # set by the caller while an alert is open: +1 surge, -1 collapse
        self.shift_obs = 0.0
        self.shift_exp = 0.0
        self.intervals = HorizonIntervals(c.max_horizon)

    # ------------------------------------------------------------------ model
    def _slots(self, ts_ms: int) -> tuple[int, int]:
        c = self.config
        w = local_slot(ts_ms, c.tz, c.slot, WEEK_S)
        return w % c.day_slots, w

    @property
    def phi(self) -> float:
        if self.ar_xx <= 0.0:
            return 0.0
        return max(0.0, min(self.config.ar_max, self.ar_xy / self.ar_xx))

    def _combine(self, d: int, w: int) -> float:
        """Weighted mean of the components. forecasts for slots (d, w)."""
        num = den = 0.0
        for k, wk in enumerate(self._week):
            s = w if wk else d
            if not self.seen[k][s]:
                continue
            wt = (self.err[k] + 1e-12) ** -self.config.weight_power
            num += wt * (self.prof[k][s] + self.bias[k])
            den += wt
        return num / den if den > 0 else self.level

    def _mean_at(self, ts_ms: int, h: int) -> float:
        d, w = self._slots(ts_ms)
        return self._combine(d, w) + self.resid * self.phi ** h

    def learn_one(self, ts_ms: int, value: float) -> None:
        """Learn one closed bucket (causal: score the pending forecasts first, then learn)."""
        c = self.config
        y = float(value)
        if not math.isfinite(y):
            raise ValueError("value must be finite")
        self.min_value = min(self.min_value, y)
        d, w = self._slots(ts_ms)
        if self.n == 0:
            self.level = y
        base = self._combine(d, w)
        pred = base + self.phi * self.resid
        err = y - pred
        scale = self.scale if self.scale > 0 else abs(err) or abs(y) * 0.1 or 1.0
        self.intervals.observe(y, scale)
        weight = c.shift_weight if self.shift else 1.0
        if self.shift:
            self.shift_obs += y
            # Against the seasonal combination without the AR carry-over: the residual of the
            # last buckets is the shift itself, not the usual pattern.
            self.shift_exp += max(base, 0.0) if self.min_value >= 0 else base
        lim = c.clip * scale
        e_clip = max(-lim, min(lim, err))
        yc = pred + e_clip  # the value with its innovation clipped: target of every update
        if self.n > 0 and not self.shift:  # a shift is not noise
            self.scale = abs(e_clip) if self.scale == 0 else self.scale + c.scale_alpha * (abs(e_clip) - self.scale)
        raw = yc - base
        if self.n > 0 and not self.shift:
            self.ar_xy += c.ar_alpha * (raw * self.resid - self.ar_xy)
            self.ar_xx += c.ar_alpha * (self.resid * self.resid - self.ar_xx)
        self.resid = raw
        self.level += c.level_alpha * weight * (yc - self.level)
        for k, wk in enumerate(self._week):
            s = w if wk else d
            prof, seen = self.prof[k], self.seen[k]
            if not seen[s]:
                prof[s] = yc
                seen[s] = 1
                continue
            e_k = yc - prof[s] - self.bias[k]
            self.err[k] += c.err_alpha * weight * (e_k * e_k - self.err[k])
            self.bias[k] += c.bias_alpha * weight * (yc - prof[s] - self.bias[k])
            prof[s] += self._betas[k] * weight * (yc - prof[s])
        self.n += 1
        self.last_ms = ts_ms
        # Pending forecasts at the anchor horizons, scored when their bucket arrives.
        step = c.step_s * 1000
        self.intervals.record([self._mean_at(ts_ms + h * step, h) for h in self.intervals.anchors], self.scale)

    # --------------------------------------------------------------- forecast
    def forecast(self, horizon: int, hold_shift: bool = False, factor: float | None = None) -> list[ForecastPoint]:
        """The next ``horizon`` buckets after the last one learned.

        ``hold_shift``: scale the forecast by observed/expected over the open shift (what the
        next buckets look like if the shift holds); without an open shift it changes nothing.
        ``factor``: scale by this ratio instead (e.g. an alert's observed/expected at OPEN).
        """
        if self.last_ms is None:
            raise ValueError("nothing learned yet")
        if horizon < 1 or horizon > self.config.max_horizon:
            raise ValueError(f"horizon must be between 1 and {self.config.max_horizon}")
        if factor is None:
            factor = self.shift_ratio if hold_shift and self.shift else 1.0
        elif not math.isfinite(factor) or factor < 0:
            raise ValueError("factor must be a finite number >= 0")
        counts = self.min_value >= 0
        step = self.config.step_s * 1000
        scale = self.scale if self.scale > 0 else 1.0
        out: list[ForecastPoint] = []
        for h in range(1, horizon + 1):
            ts = self.last_ms + h * step
            mean = self._mean_at(ts, h) * factor
            lo95, lo80, hi80, hi95 = (mean + q * scale * factor for q in self.intervals.quantiles(h))
            if counts:
                mean = max(mean, 0.0)
                lo95, lo80 = max(lo95, 0.0), max(lo80, 0.0)
            lo80 = min(lo80, mean)
            lo95 = min(lo95, lo80)
            hi80 = max(hi80, mean)
            hi95 = max(hi95, hi80)
            out.append((ts, mean, lo80, hi80, lo95, hi95))
        return out

    @property
    def shift_ratio(self) -> float:
        """Observed / expected over the open shift so far (1.0 before any shift bucket)."""
        if self.shift_exp <= 0.0:
            return 1.0 if self.shift_obs <= 0.0 else 10.0
        return max(0.0, self.shift_obs / self.shift_exp)

    # -------------------------------------------------------------- lifecycle
    def set_shift(self, direction: int) -> None:
        """Mark an open shift (+1 / -1) or its end (0, e.g. RESOLVED). Starting one resets the
        shift's observed/expected sums."""
        direction = (direction > 0) - (direction < 0)
        if direction and not self.shift:
            self.shift_obs = self.shift_exp = 0.0
        self.shift = direction
        if not direction:
            self.shift_obs = self.shift_exp = 0.0

    def rebaseline(self, factor: float | None = None) -> None:
        """NEW_NORMAL: move level and profiles to the new level at once.

        ``factor`` defaults to observed/expected over the shift; the profiles and level are
        scaled by it (the detector's re-baseline does the same with its slot means).
        """
        f = self.shift_ratio if factor is None else float(factor)
        if not math.isfinite(f) or f < 0:
            raise ValueError("factor must be a finite number >= 0")
        self.level *= f
        self.prof = [[x * f for x in prof] for prof in self.prof]
        self.bias = [x * f for x in self.bias]
        self.resid = 0.0
        self.scale *= max(f, 1e-3) ** 0.5 if f < 1 else f ** 0.5
        self.set_shift(0)

    # ---------------------------------------------------------------- state
    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "v": _VERSION, "n": self.n, "last": self.last_ms, "level": self.level,
            "prof": self.prof, "seen": self.seen, "bias": self.bias, "err": self.err,
            "scale": self.scale, "resid": self.resid, "ar": [self.ar_xy, self.ar_xx],
            "min": None if self.min_value == math.inf else self.min_value,
            "shift": [self.shift, self.shift_obs, self.shift_exp], "iv": self.intervals.snapshot(),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], config: ForecastConfig | None = None) -> Forecaster:
        """Restore from :meth:`snapshot` output (same configuration required)."""
        f = cls(config)
        c = f.config
        if [len(p) for p in data["prof"]] != [len(p) for p in f.prof]:
            raise ValueError("snapshot was taken with another slot configuration")
        f.n = int(data["n"])
        f.last_ms = data["last"]
        f.level = float(data["level"])
        f.prof = [[float(x) for x in p] for p in data["prof"]]
        f.seen = [[int(x) for x in p] for p in data["seen"]]
        f.bias = [float(x) for x in data["bias"]]
        f.err = [float(x) for x in data["err"]]
        f.scale = float(data["scale"])
        f.resid = float(data["resid"])
        f.ar_xy, f.ar_xx = (float(x) for x in data["ar"])
        f.min_value = math.inf if data["min"] is None else float(data["min"])
        f.shift = int(data["shift"][0])
        f.shift_obs, f.shift_exp = float(data["shift"][1]), float(data["shift"][2])
        f.intervals = HorizonIntervals.from_snapshot(data["iv"], c.max_horizon)
        return f
