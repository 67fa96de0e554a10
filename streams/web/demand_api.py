"""What ``/demand/keys`` and ``/demand/forecast`` answer, from demand table entries; pure.

The Faust views (:mod:`streams.web.demand`) route a forecast request to the worker owning the
key and call these functions there; tests call them with plain dicts.

The demand table holds one entry per series, a dimension key and a measure, under
``MEASURE/KEY`` (the pre-measure ``events`` count under the bare key); a series' forecast state
is ``entry["fc"]`` (a :class:`Foresight` state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.demand.foresight import Foresight
from streams.demand.series import parse_series_key, series_key

__all__ = ["DEFAULT_HORIZON", "series_key", "parse_series_key", "parse_forecast_query", "keys_body",
           "forecast_body"]

DEFAULT_HORIZON = 48
_MAX_KEY = 200


def parse_forecast_query(query: Mapping[str, str], max_horizon: int, measures: Iterable[str]) -> tuple[str, str, int]:
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
    """One row per series (key and measure): shift state and last values, busiest first.
    ``entries``: ``(state key, entry)`` pairs of the demand table."""
    rows = []
    for skey, entry in entries:
        if not entry:
            continue
        key, measure = parse_series_key(skey)
        lifecycle = (entry.get("mon") or {}).get("lifecycle") or {}
        summary = foresight.summary(entry.get("fc"))
        rows.append({"key": key, "dimension": key.partition(":")[0], "measure": measure,
                     "monitored": entry.get("mon") is not None, "alert_open": bool(lifecycle.get("alert_id")), **summary})
    rows.sort(key=lambda r: (r["key"], r["measure"]))
    return rows


def forecast_body(key: str, measure: str, horizon: int, entry: Mapping[str, Any] | None,
                  foresight: Foresight) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of ``/demand/forecast`` on the worker owning ``key``."""
    if entry is None:
        return 404, {"error": f"no {measure} demand seen for key {key!r}"}
    state = entry.get("fc")
    if not state or not state.get("h"):
        return 404, {"error": f"no {measure} forecast for key {key!r} yet (less than an hour of data)"}
    view = foresight.view(state, horizon)
    return 200, {"key": key, "measure": measure, "horizon": horizon, **view}
