"""A stand-in for the worker's :class:`~streams.observability.metrics.Metrics` where a stage runs
without Prometheus (benchmarks, pure tests): every metric accepts every call and records nothing.

>>> m = Unmetered()
>>> m.demand_alerts_open.labels("category", "orders", "surge").set(1)
>>> m.demand_late_counts.inc()
"""

from __future__ import annotations

from typing import Any

__all__ = ["Unmetered"]


class _Instrument:
    def labels(self, *args: Any, **kwargs: Any) -> _Instrument:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


_NOTHING = _Instrument()


class Unmetered:
    """Any attribute is an instrument that records nothing."""

    def __getattr__(self, name: str) -> _Instrument:
        if name.startswith("__"):
            raise AttributeError(name)
        return _NOTHING
