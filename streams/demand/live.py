"""Live objects kept between bucket closes, each under the very snapshot dict it last wrote.

Why reuse is safe: the stage may compute an outcome that is never committed (the agent commits
only after the alert sends succeed; a sliced close may be cut half-way by a crash, a failure or
a rebalance). The table then still holds the OLD snapshot dict, not the one kept with the
advanced object, so the identity check misses and the caller restores from the old snapshot;
the already-advanced object is never reused. A rebalance (table restored from the changelog:
new dicts) or an evicted entry misses the same way. An entry is popped when taken, so a close
that fails half-way cannot leave an advanced object paired with the snapshot it started from.
Identity, not equality: equal contents written by another path must still be restored.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

__all__ = ["LiveCache"]

T = TypeVar("T")


class LiveCache(Generic[T]):
    """A bounded LRU of ``key -> (snapshot, live object)``; ``size`` 0 keeps nothing.

    >>> cache: LiveCache[str] = LiveCache(2)
    >>> snap = {"n": 1}
    >>> cache.keep("a", snap, "live a")
    >>> cache.take("a", {"n": 1}) is None  # equal but not the same dict: restore
    True
    >>> cache.keep("a", snap, "live a")
    >>> cache.take("a", snap)
    'live a'
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._items: OrderedDict[str, tuple[dict[str, Any], T]] = OrderedDict()

    def take(self, key: str, snapshot: dict[str, Any]) -> T | None:
        """The live object kept under ``snapshot`` itself (removed from the cache), else None."""
        hit = self._items.pop(key, None)
        if hit is not None and hit[0] is snapshot:
            return hit[1]
        return None

    def keep(self, key: str, snapshot: dict[str, Any], obj: T) -> None:
        """Keep ``obj`` live under the ``snapshot`` dict the table is about to hold."""
        if self.size:
            self._items[key] = (snapshot, obj)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
