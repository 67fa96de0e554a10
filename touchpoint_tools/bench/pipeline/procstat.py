"""CPU time and resident memory of processes, read from /proc (Linux).

CPU is ``utime + stime`` of the whole process (every thread), in seconds; resolution is one
clock tick (10 ms with the usual CLK_TCK of 100).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "rss_bytes", "parse_stat_cpu_ticks", "CpuMeter"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_stat_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from the text of /proc/<pid>/stat.

    The command name (field 2) may contain spaces and parentheses, so fields are counted from
    the last ')'. utime and stime are fields 14 and 15.

    >>> parse_stat_cpu_ticks("42 (py thon) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0")
    333
    """
    rest = stat.rpartition(")")[2].split()
    # rest[0] is field 3 (state), so field n is rest[n - 3].
    return int(rest[11]) + int(rest[12])


def cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds used so far by ``pid`` (all threads); ``None`` if it is unknown or gone."""
    if pid is None:
        return None
    try:
        return parse_stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / _TICK
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes(pid: int | None) -> int | None:
    """Resident set size of ``pid`` in bytes; ``None`` if unknown."""
    if pid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU seconds of named processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = dict(pids)
        self._start: dict[str, float | None] = {}
        self.used: dict[str, float | None] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float | None]:
        for name, pid in self.pids.items():
            now, then = cpu_seconds(pid), self._start.get(name)
            self.used[name] = None if now is None or then is None else max(0.0, now - then)
        return self.used
