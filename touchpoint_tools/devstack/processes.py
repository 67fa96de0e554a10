"""Processes of the local stack: pid files, the stack lock, liveness and ports.

A pid is only trusted when /proc/<pid>/cmdline names this home's config file, so a reused pid
is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from . import kafka as _kafka
from .config import HOST, StackConfig, StackError

LOG_TAIL_LINES = 30

# Popen objects of children started by this process, so we can reap them (otherwise a
# dead child stays a zombie and still "exists" in /proc).
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def locked(cfg: StackConfig, timeout_s: float) -> Iterator[None]:
    """Exclusive flock on home/stack.lock so two concurrent up() calls don't race."""
    cfg.home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(cfg.lock_file, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StackError(f"another devstack operation holds {cfg.lock_file} (waited {timeout_s:.0f}s)") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def proc_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie still has /proc/<pid>)."""
    child = CHILDREN.get(pid)
    if child is not None:
        # waitpid is exact: it succeeds only once every thread has exited, whereas a
        # JVM's leader thread shows as zombie while the others are still tearing down.
        if child.poll() is None:
            return True
        CHILDREN.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def cmdline_matches(cmdline: bytes, marker: str) -> bool:
    """True if one argv element equals ``marker`` (our config path)."""
    return marker.encode() in cmdline.split(b"\0")


def is_ours(pid: int, marker: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline_matches(cmdline, str(marker))


def our_pid(cfg: StackConfig, service: str) -> int | None:
    """The live pid of our process for ``service``, cleaning up a stale pid file."""
    pf = cfg.pid_file(service)
    pid = read_pid(pf)
    if pid is None:
        return None
    if proc_alive(pid) and is_ours(pid, cfg.config_file(service)):
        return pid
    # Stale: the process died (or the pid was reused by something else). Never signal it.
    with contextlib.suppress(OSError):
        pf.unlink()
    return None



def port_in_use(port: int) -> bool:
    return _kafka.port_open(HOST, port, timeout_s=0.3)


def wait_ports_free(ports: tuple[int, ...], timeout_s: float) -> bool:
    """Sockets of a just-killed process can outlive its pid by a moment; wait (bounded)."""
    deadline = time.monotonic() + timeout_s
    while any(port_in_use(p) for p in ports):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True

