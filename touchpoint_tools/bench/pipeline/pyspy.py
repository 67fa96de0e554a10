"""py-spy's collapsed stacks (``--format raw``) -> where the worker's CPU goes, by function.

Each line is ``frame;frame;...;leaf COUNT`` with frames written ``function (path:line)``. Idle
samples (the event loop waiting in epoll) are not recorded by py-spy without ``--idle``, so the
shares are shares of busy samples.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["executable", "parse_frame", "summarize", "area"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^():]*?)(?::(?P<line>\d+))?\)$")


def executable() -> str:
    """The py-spy next to this interpreter (the venv's bin), in the bench peers' venv
    (``.venv-bench``, see peering.peer_python), else the one on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    bench_venv = Path(__file__).resolve().parents[3] / ".venv-bench" / "bin" / "py-spy"
    for candidate in (here, bench_venv):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("py-spy")
    if not found:
        raise FileNotFoundError("py-spy is not installed: pip install -e '.[bench]'")
    return found


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, short path) of one frame; the line number is dropped so a function is one row.

    >>> parse_frame("process_batch (streams/ingest/stage.py:95)")
    ('process_batch', 'streams/ingest/stage.py')
    >>> parse_frame("send (/x/.venv/lib/python3.11/site-packages/aiokafka/producer/producer.py:470)")
    ('send', 'aiokafka/producer/producer.py')
    """
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    path = m.group("path")
    # Shorten to a path relative to site-packages, the stdlib, or this repository's package.
    repo = str(Path(__file__).resolve().parents[3]) + "/"
    for marker in ("site-packages/", "/lib/python3.11/", repo):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if "/streams/" in path:
            path = "streams/" + path.split("/streams/", 1)[1]
    return m.group("func"), path


def area(path: str) -> str:
    """The package a frame belongs to (faust, aiokafka, mode, redis, streams.ingest, stdlib:asyncio, ...).

    >>> area("streams/ingest/stage.py")
    'streams.ingest'
    >>> area("asyncio/base_events.py")
    'stdlib:asyncio'
    """
    parts = path.split("/")
    if parts[0] == "streams" and len(parts) > 1:
        return "streams." + parts[1].removesuffix(".py")
    if len(parts) == 1:
        return "stdlib:" + parts[0].removesuffix(".py") if parts[0] else "?"
    known = {"faust", "aiokafka", "mode", "redis", "orjson", "fastjsonschema", "prometheus_client", "phonenumbers",
             "cryptography", "aiohttp", "kafka", "yarl", "multidict", "croniter", "venusian"}
    if parts[0] in known:
        return parts[0]
    return "stdlib:" + parts[0] if not path.startswith("/") else parts[0] or "?"


def summarize(raw: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares per function and self share per area, from collapsed stacks."""
    total = 0
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [parse_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        func, path = frames[-1]
        self_fn[f"{func} ({path})"] += n
        self_area[area(path)] += n
        for name in {f"{f} ({p})" for f, p in frames}:
            incl_fn[name] += n
    if not total:
        return {"samples": 0, "self": [], "inclusive": [], "areas": []}

    def share(c: Counter[str], k: int) -> list[list[Any]]:
        return [[name, round(100.0 * v / total, 1)] for name, v in c.most_common(k)]

    return {"samples": total, "self": share(self_fn, top), "inclusive": share(incl_fn, top * 2), "areas": share(self_area, top)}
