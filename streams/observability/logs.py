"""Rate-limited logging of repeated client errors.

While the broker is down, aiokafka logs the same "Unable to update metadata" line thousands of
times a second (38,500 lines in a 10 s outage, docs/reliability.md): the outage is the news, not
every retry. The first occurrence of a message is logged, then at most one per interval with a
count of what was suppressed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

__all__ = ["RepeatLimiter", "limit_repeats"]


class RepeatLimiter(logging.Filter):
    """Lets a given (logger, level, message template) through at most once per ``interval_s``."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic, max_keys: int = 1024) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.max_keys = max_keys
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} ({seen[1]} similar messages suppressed in the last {now - seen[0]:.0f}s)"
        if len(self._last) >= self.max_keys and key not in self._last:
            self._last.clear()  # bounded memory: forget everything rather than grow
        self._last[key] = (now, 0)
        return True


def limit_repeats(prefixes: Iterable[str] = ("aiokafka",), interval_s: float = 10.0) -> RepeatLimiter:
    """Attach one limiter to every logger under ``prefixes`` (a logger's filter sees the records it creates)."""
    limiter = RepeatLimiter(interval_s)
    wanted = tuple(prefixes)
    names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith(tuple(w + "." for w in wanted))]
    for name in {*names, *wanted}:
        logging.getLogger(name).addFilter(limiter)
    return limiter
