"""``touchpoint worker`` processes for the bench: start, wait ready, pause/resume, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from streams.settings import Settings

__all__ = ["WorkerProc", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProc:
    """One worker subprocess; its log goes to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **settings.to_env()}
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "worker"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readyz(self) -> dict | None:
        url = f"http://127.0.0.1:{self.settings.web_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as err:
            with contextlib.suppress(ValueError):
                return orjson.loads(err.read())
            return None
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


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
