"""The size bound of one profile value (``Limits.max_bytes``) and the rule that enforces it.

A profile value is one Kafka record in the ``profiles`` changelog and travels whole inside an
``absorb`` record when its person merges, so it must stay well under the record limit
(``TOUCHPOINT_MAX_RECORD_BYTES``). Every part is capped by count (``Limits``), names and values
by length; this is the last bound, on the encoded total.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from streams.profiles.profile import DEFAULT_LIMITS, Limits, _by_count, _by_last_seen, encode

__all__ = ["TRIM_ORDER", "bounded_encode"]


# Parts trimmed when a value exceeds Limits.max_bytes, in this order, each entry by entry from the
# least valuable: the timeline oldest first, traits and consent flags least recently set first,
# categories smallest count first, identifiers least recently seen first (one is always kept).
# Counts, first/last seen, orders, funnel, ``ab``, ``wm``, ``rc`` and ``po`` are never trimmed:
# they are small or bounded elsewhere (``ab``/``wm`` by identity's merge limits), and the dedup
# and merge-once guarantees depend on them.
TRIM_ORDER = ("tl", "tr", "cat", "cs", "ids")


def bounded_encode(state: dict[str, Any], limits: Limits = DEFAULT_LIMITS, dropped: Counter[str] | None = None) -> bytes:
    """``encode(state)``, trimmed (in place, by TRIM_ORDER) until it is at most ``limits.max_bytes``.

    Deterministic: the same state gives the same trimmed value. The entries dropped are counted
    per part in ``dropped``. A value can still exceed the bound only when every trimmable part is
    empty (e.g. thousands of merged profile ids in ``ab``); the caller checks the record limit.
    """
    raw = encode(state)
    for part in TRIM_ORDER:
        while len(raw) > limits.max_bytes:
            removed = _trim_part(state, part, len(raw) - limits.max_bytes)
            if not removed:
                break  # this part is empty (or down to its last identifier): the next part
            if dropped is not None:
                dropped[part] += removed
            raw = encode(state)
    return raw


def _trim_part(state: dict[str, Any], part: str, excess: int) -> int:
    """Drop entries of one part, least valuable first, until about ``excess`` bytes are gone."""
    value = state.get(part)
    if not value:
        return 0
    if part == "tl":
        freed = n = 0
        while n < len(value) and freed < excess:
            freed += len(orjson.dumps(value[n])) + 1
            n += 1
        del value[:n]
        return n
    order = _by_count if part == "cat" else _by_last_seen
    keep_one = 1 if part == "ids" else 0
    freed = n = 0
    for name, entry in sorted(value.items(), key=order):
        if freed >= excess or len(value) <= keep_one:
            break
        freed += len(orjson.dumps(name)) + len(orjson.dumps(entry)) + 2
        del value[name]
        n += 1
    return n
