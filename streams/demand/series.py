"""Series of the demand stage: a dimension key and a measure, their state keys, and read access
to the live state for other readers (the forecaster, the HTTP API).

The ``demand`` table holds one entry per series under ``MEASURE/KEY`` (``units/category:masks``);
entries written before measures existed live under the bare dimension key and are the legacy
``events`` measure (every demand event counted once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams.demand.dimensions import LEGACY_MEASURE, MEASURES
from streams.demand.monitor import DemandMonitor

if TYPE_CHECKING:
    from streams.demand.stage import StageConfig

__all__ = ["DEFAULT_MIN_EXCESS", "parse_min_excess", "series_key", "parse_series_key", "list_series", "read_monitor"]

#: Volume rule defaults (``TOUCHPOINT_DEMAND_MIN_EXCESS``): an alert is published once the shift
#: moved this much of its measure away from the baseline (orders, units, revenue in the reporting
#: currency, interest events).
DEFAULT_MIN_EXCESS = "orders=12,units=24,revenue=1500,interest=40"


def parse_min_excess(text: str) -> dict[str, float]:
    """``measure=amount`` pairs, comma-separated; ValueError names what is wrong.

    >>> parse_min_excess("orders=12, revenue=1500")
    {'orders': 12.0, 'revenue': 1500.0}
    """
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in MEASURES:
            raise ValueError(f"{part!r}: expected MEASURE=AMOUNT with a measure among {', '.join(MEASURES)}")
        try:
            amount = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: {value.strip()!r} is not a number") from None
        if amount < 0 or amount != amount:
            raise ValueError(f"{part!r}: the amount must be >= 0")
        out[name] = amount
    return out


def series_key(key: str, measure: str) -> str:
    """The state key of a series: ``MEASURE/KEY``; the legacy ``events`` measure is the bare key.

    >>> series_key("category:masks", "units"), series_key("category:masks", "events")
    ('units/category:masks', 'category:masks')
    """
    return key if measure == LEGACY_MEASURE else f"{measure}/{key}"


def parse_series_key(skey: str) -> tuple[str, str]:
    """``(dimension key, measure)`` of a state key (inverse of :func:`series_key`).

    A dimension key starts with ``dimension:``, and no measure name holds ``:``, so the first
    ``/`` before any ``:`` separates the measure.

    >>> parse_series_key("units/category:a/b"), parse_series_key("category:a/b")
    (('category:a/b', 'units'), ('category:a/b', 'events'))
    """
    head, sep, rest = skey.partition("/")
    if sep and ":" not in head:
        return rest, head
    return skey, LEGACY_MEASURE


def list_series(state: Any, measures: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """``(key, measure)`` of every series with state in ``state`` (a mapping: the ``demand``
    table or a dict), optionally only the given measures, sorted."""
    out = []
    for skey in list(state.keys()):
        key, measure = parse_series_key(skey)
        if measures is None or measure in measures:
            out.append((key, measure))
    return sorted(out)


def read_monitor(state: Any, key: str, measure: str, config: StageConfig) -> DemandMonitor | None:
    """The live monitor of one series (a fresh object restored from its state; None when the
    series is unknown or pooled: too little volume to be monitored on its own)."""
    entry = state.get(series_key(key, measure))
    if not entry or entry.get("mon") is None:
        return None
    return DemandMonitor.from_snapshot(entry["mon"], key, key.partition(":")[0], config.detector_config(),
                                       config.lifecycle_config(measure), measure)
