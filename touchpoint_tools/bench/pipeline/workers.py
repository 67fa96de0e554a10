"""``touchpoint worker`` processes for the bench: start, wait ready, pause/resume, stop."""

from __future__ import annotations

import time

from touchpoint_tools.devstack.worker import WorkerProcess, free_port

__all__ = ["WorkerProc", "free_port"]


WorkerProc = WorkerProcess  # the bench's name for it


def wait_all_ready(workers: list[WorkerProc], timeout_s: float = 120.0, stable_s: float = 3.0) -> None:
    """Every worker answers /readyz 200 with partitions assigned, unchanged for ``stable_s``."""
    deadline = time.monotonic() + timeout_s
    since: float | None = None
    last: tuple | None = None
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker {w.pid} exited with {w.proc.returncode}:\n{w.log_tail()}")
        states = [w.readyz() for w in workers]
        shape = tuple((s or {}).get("partitions", 0) if (s or {}).get("ready") else -1 for s in states)
        now = time.monotonic()
        if all(p > 0 for p in shape):
            if shape != last:
                since, last = now, shape
            elif now - (since or now) >= stable_s:
                return
        else:
            since, last = None, None
        time.sleep(0.3)
    raise TimeoutError(f"workers not ready within {timeout_s:.0f}s:\n" + "\n".join(w.log_tail(20) for w in workers))
