"""The value of one ``demand-counts`` record: a dimension key's partial sum of a measure in one
bucket, from one or more source input partitions (what the ingest stage pre-aggregated)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.demand.dimensions import LEGACY_MEASURE, MEASURES

__all__ = ["partial_message", "parse_partial"]


def partial_message(value: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """A demand-counts value as a dict (decoded when it is bytes or text)."""
    return orjson.loads(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else value


def parse_partial(value: bytes | dict[str, Any]) -> tuple[str, str, int, list[tuple[int, float, int]]]:
    """``(key, measure, bucket_ms, [(source partition, sum, last source offset), ...])`` of one
    demand-counts value: ``{"k", "m", "b", "n", "c": [[p, n, o], ...]}``. Values written before
    measures have no ``"m"`` (read as the legacy ``events`` count); the oldest single-source form
    ``{"k", "b", "n", "p", "o"}`` is read too."""
    msg = partial_message(value)
    key = msg["k"]
    if not isinstance(key, str) or ":" not in key:
        raise ValueError(f"bad dimension key {key!r}")
    measure = msg.get("m", LEGACY_MEASURE)
    if measure not in MEASURES and measure != LEGACY_MEASURE:
        raise ValueError(f"unknown measure {measure!r}")
    parts = msg.get("c")
    if parts is None:
        return key, measure, int(msg["b"]), [(int(msg["p"]), _num(msg["n"]), int(msg["o"]))]
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"bad source counts {parts!r}")
    return key, measure, int(msg["b"]), [(int(p), _num(n), int(o)) for p, n, o in parts]


def _num(v: Any) -> float:
    x = float(v)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"bad partial sum {v!r}")
    return int(x) if x == int(x) else x
