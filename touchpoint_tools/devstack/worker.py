"""``touchpoint worker`` as a child process: start, wait until ready, pause, stop.

Used by ``touchpoint demo``, ``touchpoint bench`` and the tests, so they all run workers the way
a user does (a real process with its own settings in the environment).
"""

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
from typing import Any

import orjson

from streams.settings import Settings

__all__ = ["WorkerProcess", "free_port"]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """One worker subprocess; its output goes to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, cwd: Path | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **settings.to_env()}
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "worker"], env=env, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a path on the worker's HTTP server: (status, body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def readyz(self) -> dict[str, Any] | None:
        """The /readyz body, or None when the worker does not answer."""
        try:
            _, body = self.get("/readyz", timeout=2)
            return orjson.loads(body)
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until /readyz answers 200; RuntimeError with the log's tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.get("/readyz", timeout=2)[0] == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready within {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        """Signal the worker (SIGTERM lets it commit and leave the group) and reap it, bounded."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
