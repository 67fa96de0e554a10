"""What ``/demand/keys`` and ``/demand/forecast`` answer, from demand table entries; pure.

The Faust views (:mod:`streams.web.demand`) route a forecast request to the worker owning the
key and call these functions there; tests call them with plain dicts.

Where a key's forecast state lives inside a demand table entry is decided in one place,
:func:`measure_states`: ``entry["fc"]`` maps a measure to its :class:`Foresight` state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.demand.foresight import Foresight

__all__ = ["DEFAULT_HORIZON", "MEASURES", "measure_states", "parse_forecast_query", "keys_body", "forecast_body"]

DEFAULT_HORIZON = 48
MEASURES = ("events",)  # the measures the stage forecasts (the stage's entry["fc"] keys)
_MAX_KEY = 200


def measure_states(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{measure: foresight state}`` of one demand table entry ({} when nothing is forecast yet)."""
    if not entry:
        return {}
    fc = entry.get("fc")
    return dict(fc) if isinstance(fc, Mapping) else {}


def parse_forecast_query(query: Mapping[str, str], max_horizon: int, measures: Iterable[str] = MEASURES) -> tuple[str, str, int]:
    """``(key, measure, horizon)`` from query parameters; ValueError says what is wrong."""
    measures = tuple(measures)
    unknown = sorted(set(query) - {"key", "measure", "horizon", "local"})
    if unknown:
        raise ValueError(f"unknown query parameter {unknown[0]!r}: use key, measure, horizon")
    key = (query.get("key") or "").strip()
    if not key:
        raise ValueError("missing query parameter key=DIMENSION:VALUE, e.g. key=category:masks")
    dimension, sep, value = key.partition(":")
    if not sep or not dimension or not value or len(key) > _MAX_KEY:
        raise ValueError(f"key must look like DIMENSION:VALUE (e.g. category:masks), at most {_MAX_KEY} characters")
    measure = query.get("measure") or measures[0]
    if measure not in measures:
        raise ValueError(f"unknown measure {measure!r}: one of {', '.join(measures)}")
    text = query.get("horizon")
    if text is None or text == "":
        horizon = min(DEFAULT_HORIZON, max_horizon)
    else:
        try:
            horizon = int(text)
        except ValueError:
            raise ValueError(f"horizon must be a whole number of steps, got {text!r}") from None
        if not 1 <= horizon <= max_horizon:
            raise ValueError(f"horizon must be between 1 and {max_horizon} steps (7 days), got {horizon}")
    return key, measure, horizon


def keys_body(entries: Iterable[tuple[str, Mapping[str, Any]]], foresight: Foresight) -> list[dict[str, Any]]:
    """One row per key and measure: current shift state and last values, busiest first."""
    rows = []
    for key, entry in entries:
        lifecycle = ((entry.get("mon") or {}).get("lifecycle") or {}) if entry else {}
        for measure, state in sorted(measure_states(entry).items()):
            summary = foresight.summary(state)
            rows.append({"key": key, "dimension": key.partition(":")[0], "measure": measure,
                         "alert_open": bool(lifecycle.get("alert_id")), **summary})
    rows.sort(key=lambda r: (-(r["last_value"] or 0.0), r["key"], r["measure"]))
    return rows


def forecast_body(key: str, measure: str, horizon: int, entry: Mapping[str, Any] | None,
                  foresight: Foresight) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of ``/demand/forecast`` on the worker owning ``key``."""
    if entry is None:
        return 404, {"error": f"no demand seen for key {key!r} on this worker's partitions"}
    state = measure_states(entry).get(measure)
    if state is None:
        return 404, {"error": f"no {measure!r} forecast for key {key!r} yet (pooled or too new)"}
    view = foresight.view(state, horizon)
    return 200, {"key": key, "measure": measure, "horizon": horizon, **view}
