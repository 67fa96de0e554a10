"""Live forecasts per key and measure, fed by the detector's closed buckets; pure, JSON-safe state.

The demand stage calls :meth:`Foresight.feed` with every closed bucket of a key (the same value
the detector saw, the detector's expected value, and the alert records that bucket produced).
Buckets are summed into forecast steps of ``step_s`` (an hour by default: business staff read
hourly demand, and hourly steps keep a key's model at 24 + 168 seasonal slots whatever the
bucket size); a complete step is learned by the key's :class:`~streams.demand.forecast.Forecaster`.

State per key and measure (``entry["fc"]``, a few KB)::

    {"acc": [step_start_ms, value_sum, expected_sum, expected_known],   # the step being summed
     "m": {...},                       # Forecaster.snapshot()
     "h": [[step_ms, value, expected|None], ...],   # recent steps for the page (bounded)
     "sh": [{...}, ...],               # recent shifts (alert lifecycle summaries, bounded)
     "peak": 1.0,                      # peak observed/expected step ratio of the open shift
     "so": [obs, expected]}            # sums over the open shift's steps (detector's expected)

Alert lifecycle: OPEN sets the forecaster's shift flag (learning slows, answers say a shift is
open), RESOLVED clears it, NEW_NORMAL re-baselines the forecaster at the observed level at once.
:meth:`Foresight.alert_forecast` is the record attached to an OPEN: the next day if the shift
holds (the forecast scaled by the alert's observed/expected).

Forecasts are made lazily (on request, on OPEN), never per bucket: learning a step costs one
``learn_one`` (tens of microseconds); see docs/forecast.md for the measured figures.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .buckets import DAY_S, iso_utc
from .forecast import ForecastConfig, Forecaster

__all__ = ["ForesightConfig", "Foresight", "OUTCOMES"]

OUTCOMES = ("OPEN", "RESOLVED", "NEW_NORMAL")
# Live forecasters kept between feeds (see Foresight._take): one entry is a model (24 + 168
# hourly slots and their counts, a few KB of Python objects) plus the snapshot dict it wrote.
LIVE_MODELS = 20_000


def _copy_json(x: Any) -> Any:
    """A copy of nested JSON lists / dicts, so a live model never mutates a snapshot it wrote."""
    if isinstance(x, list):
        return [_copy_json(v) if isinstance(v, (list, dict)) else v for v in x]
    if isinstance(x, dict):
        return {k: _copy_json(v) if isinstance(v, (list, dict)) else v for k, v in x.items()}
    return x


@dataclass(frozen=True)
class ForesightConfig:
    bucket_s: int = 300
    tz: str = "UTC"
    step_s: int = 3600
    history_steps: int = 7 * 24  # a week of hourly steps for the page
    max_shifts: int = 10

    @property
    def step(self) -> int:
        """The forecast step: at least one bucket, a whole number of buckets."""
        step = max(self.step_s, self.bucket_s)
        return step - step % self.bucket_s

    def forecaster_config(self) -> ForecastConfig:
        return ForecastConfig(step_s=self.step, tz=self.tz, max_horizon=max(1, 7 * DAY_S // self.step))


def _num(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


class Foresight:
    """Feeds closed buckets into per-key forecasters and renders what the API and page show."""

    def __init__(self, config: ForesightConfig | None = None, live_models: int = LIVE_MODELS) -> None:
        self.config = config or ForesightConfig()
        self._fc_cfg = self.config.forecaster_config()
        self._step_ms = self.config.step * 1000
        self._bucket_ms = self.config.bucket_s * 1000
        # id(model snapshot dict) -> (that dict, the live model it was written from); the dict is
        # held, so its id cannot be reused by another object while the entry exists.
        self._live: OrderedDict[int, tuple[dict[str, Any], Forecaster]] = OrderedDict()
        self._live_max = max(0, live_models)

    def forget(self) -> None:
        """Drop the live models (after a rebalance); they are restored from their snapshots."""
        self._live.clear()

    def _take(self, st: dict[str, Any]) -> Forecaster | None:
        """The model of ``st``: the live one when ``st["m"]`` is the very dict :meth:`feed_many`
        wrote from it, else restored. Popped before use: an outcome that is never committed leaves
        the OLD snapshot dict in the table, which no longer maps to the advanced model, so a
        replay restores from that old snapshot (identity, not equality, decides)."""
        m = st.get("m")
        if m is None:
            return None
        hit = self._live.pop(id(m), None)
        if hit is not None and hit[0] is m:
            return hit[1]
        return self.model(st)

    def _keep(self, model: Forecaster) -> dict[str, Any]:
        snap: dict[str, Any] = _copy_json(model.snapshot())  # the model mutates its lists in place
        if self._live_max:
            self._live[id(snap)] = (snap, model)
            while len(self._live) > self._live_max:
                self._live.popitem(last=False)
        return snap

    @property
    def max_horizon(self) -> int:
        return self._fc_cfg.max_horizon

    def model(self, state: dict[str, Any] | None) -> Forecaster | None:
        if not state or state.get("m") is None:
            return None
        return Forecaster.from_snapshot(state["m"], self._fc_cfg)

    # ------------------------------------------------------------------ feed
    def feed(self, state: dict[str, Any] | None, bucket_ms: int, value: float, expected: float | None,
             records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One closed bucket (and the alert records it produced); returns the new state."""
        return self.feed_many(state, [(bucket_ms, value, expected, records or [])])

    def feed_many(self, state: dict[str, Any] | None,
                  buckets: list[tuple[int, float, float | None, list[dict[str, Any]]]]) -> dict[str, Any]:
        """Closed buckets of one key in time order: ``(bucket_ms, value, expected, records)``.

        The model is restored from its snapshot only when a step completes or an alert record
        arrives, and written back once: a 5-min bucket inside an hour only adds to the sum.
        Never mutates ``state`` (a table's memory store hands out its own objects).
        """
        st = {"acc": None, "m": None, "h": [], "sh": [], "peak": 1.0} if state is None else {
            "acc": state.get("acc"), "m": state.get("m"), "h": list(state.get("h", [])),
            "sh": [dict(s) for s in state.get("sh", [])], "peak": state.get("peak", 1.0)}
        if state is not None and state.get("so") is not None:
            st["so"] = list(state["so"])
        loaded = False
        model: Forecaster | None = None
        acc = st["acc"]
        for bucket_ms, value, expected, records in buckets:
            step_start = bucket_ms - bucket_ms % self._step_ms
            if acc is None or acc[0] != step_start:
                acc = [step_start, 0.0, 0.0, 1]
            acc = [acc[0], acc[1] + float(value), acc[2] + (expected or 0.0), acc[3] if expected is not None else 0]
            complete = bucket_ms + self._bucket_ms >= step_start + self._step_ms
            if (records or complete) and not loaded:
                model, loaded = self._take(st) or Forecaster(self._fc_cfg), True
            for rec in records:
                self._lifecycle(st, model, rec, bucket_ms)
            if complete:
                assert model is not None
                self._learn(st, model, acc)
                acc = None
        st["acc"] = acc
        if loaded and model is not None:
            st["m"] = self._keep(model)
        return st

    def _learn(self, st: dict[str, Any], model: Forecaster, acc: list[Any]) -> None:
        step_start, value = acc[0], acc[1]
        model.learn_one(step_start, value)
        exp = acc[2] if acc[3] else None
        st["h"].append([step_start, round(value, 4), _num(exp)])
        del st["h"][: -self.config.history_steps]
        if model.shift and st.get("so") is not None:
            st["so"] = [st["so"][0] + value, st["so"][1] + (exp or 0.0)]
        if model.shift and exp:
            st["peak"] = max(st["peak"], value / exp) if model.shift > 0 else min(st["peak"], value / exp)
            if st["sh"] and st["sh"][-1]["state"] == "OPEN":
                st["sh"][-1]["peak_ratio"] = round(st["peak"], 3)

    def _lifecycle(self, st: dict[str, Any], model: Forecaster | None, rec: dict[str, Any], bucket_ms: int) -> None:
        state = rec.get("state")
        direction = 1 if rec.get("direction") == "surge" else -1
        shifts = st["sh"]
        if state == "OPEN":
            ratio = self._ratio(rec)
            shifts.append({"alert_id": rec.get("alert_id"), "direction": rec.get("direction"), "started": rec.get("opened_at") or iso_utc(bucket_ms),
                           "severity": rec.get("severity"), "peak_ratio": round(ratio, 3) if ratio is not None else None,
                           "state": "OPEN", "ended": None, "hours": 0.0})
            del shifts[: -self.config.max_shifts]
            st["peak"] = ratio if ratio is not None else 1.0
            st["so"] = [0.0, 0.0]  # observed, detector-expected over the shift's complete steps
            if model is not None:
                model.set_shift(direction)
            return
        current = shifts[-1] if shifts and shifts[-1]["alert_id"] == rec.get("alert_id") else None
        if current is not None:
            current["severity"] = max(current.get("severity") or 0, rec.get("severity") or 0)
            current["hours"] = round(rec.get("buckets_open", 0) * self.config.bucket_s / 3600.0, 2)
        if state in ("RESOLVED", "NEW_NORMAL"):
            st.pop("so", None)
            if current is not None:
                current["state"] = state
                current["ended"] = iso_utc(bucket_ms + self._bucket_ms)
            if model is not None:
                if state == "NEW_NORMAL":
                    model.rebaseline()  # observed/expected over the shift, as the detector does
                else:
                    model.set_shift(0)

    @staticmethod
    def _ratio(rec: dict[str, Any]) -> float | None:
        """The alert's level: its ``ratio`` (observed/expected summed over the alert so far) when
        the record has one, else the bucket's observed/expected."""
        ratio = rec.get("ratio")
        if not isinstance(ratio, (int, float)):
            exp, obs = rec.get("expected"), rec.get("observed")
            if not isinstance(exp, (int, float)) or not isinstance(obs, (int, float)) or exp <= 0:
                return None
            ratio = obs / exp
        # A zero baseline (infinite ratio) or a negative one (revenue with refunds) is no level
        # to scale a forecast by: such an alert gets no forecast record.
        return float(ratio) if math.isfinite(ratio) and ratio >= 0 else None

    # ---------------------------------------------------------------- answers
    def forecast(self, state: dict[str, Any] | None, horizon: int, factor: float | None = None) -> list[list[Any]]:
        """``[[iso, mean, lo80, hi80, lo95, hi95], ...]`` for the next ``horizon`` steps ([] before any step)."""
        if not 1 <= horizon <= self.max_horizon:
            raise ValueError(f"horizon must be between 1 and {self.max_horizon} ({self.config.step} s steps, up to 7 days)")
        model = self.model(state)
        if model is None or model.last_ms is None:
            return []
        return [[iso_utc(p[0]), *(round(x, 3) for x in p[1:])] for p in model.forecast(horizon, factor=factor)]

    def alert_forecast(self, state: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any] | None:
        """The record attached to an OPEN alert: the next day if the shift holds."""
        ratio = self._ratio(record)
        horizon = min(self.max_horizon, max(1, DAY_S // self.config.step))
        points = self.forecast(state, horizon, factor=ratio) if ratio is not None else []
        if not points:
            return None
        return {"if_shift_holds": True, "ratio": round(ratio or 1.0, 3), "step_s": self.config.step,
                "horizon": horizon, "points": points}

    def summary(self, state: dict[str, Any] | None) -> dict[str, Any]:
        """Last values and shift state of one key and measure (``/demand/keys``)."""
        st = state or {}
        hist = st.get("h") or []
        model = self.model(st)
        shifts = st.get("sh") or []
        last = hist[-1] if hist else None
        return {"last_step": iso_utc(last[0]) if last else None, "last_value": last[1] if last else None,
                "last_expected": last[2] if last else None, "steps": len(hist),
                "shift": None if model is None or not model.shift else ("surge" if model.shift > 0 else "collapse"),
                "last_alert": shifts[-1] if shifts else None}

    def view(self, state: dict[str, Any] | None, horizon: int) -> dict[str, Any]:
        """Everything the demand page draws for one key and measure."""
        st = state or {}
        model = self.model(st)
        shift = None
        if model is not None and model.shift:
            obs, exp = st.get("so") or (0.0, 0.0)
            shifts = st.get("sh") or []
            ratio = obs / exp if exp > 0 else (shifts[-1].get("peak_ratio") if shifts else None)
            shift = {"direction": "surge" if model.shift > 0 else "collapse",
                     "ratio_so_far": None if ratio is None else round(ratio, 3)}
        return {
            "step_s": self.config.step,
            "history": [[iso_utc(t), v, e] for t, v, e in st.get("h") or []],
            "forecast": self.forecast(st, horizon),
            "forecast_if_shift_holds": self.forecast(st, horizon, factor=model.shift_ratio) if shift and model else None,
            "shift_open": shift,
            "shifts": st.get("sh") or [],
        }
