"""Redis side of the local stack: config rendering, command line, PING probe."""

from __future__ import annotations

import functools
import re
import shutil
import socket
import subprocess
from pathlib import Path


def _quote(value: str) -> str:
    """Quote a value for redis.conf (double-quoted, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_redis_conf(*, host: str, port: int, data_dir: Path) -> str:
    """redis.conf for a throw-away-but-durable dev server owned by our process tree."""
    if not 0 < port < 65536:
        raise ValueError(f"bad redis port: {port}")
    lines = [
        "# Rendered by touchpoint_tools.devstack.redis; edits are overwritten on the next start.",
        f"bind {host}",
        f"port {port}",
        "protected-mode yes",
        # We are the supervisor: run in the foreground as our (detached) child.
        "daemonize no",
        "supervised no",
        # Keep argv intact so /proc/<pid>/cmdline still names this config file; stack.py
        # relies on that to make sure a pid from a pid file is really ours.
        "set-proc-title no",
        f"dir {_quote(str(data_dir))}",
        # Log to stdout, which stack.py sends to the service log file.
        'logfile ""',
        "loglevel notice",
        # Durability comes from the AOF alone; no RDB snapshots.
        'save ""',
        "appendonly yes",
        "appendfsync everysec",
        'appenddirname "appendonlydir"',
        "aof-load-truncated yes",
        "databases 16",
        "tcp-backlog 128",
        "timeout 0",
        "tcp-keepalive 60",
    ]
    return "\n".join(lines) + "\n"


def find_redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server not found (run scripts/install-system-deps.sh)")
    return exe


def server_command(redis_server: str, conf: Path) -> list[str]:
    return [redis_server, str(conf)]


@functools.lru_cache(maxsize=4)
def server_version(redis_server: str) -> str:
    """'7.0.15' from 'Redis server v=7.0.15 sha=...'; 'unknown' if it cannot be told."""
    try:
        out = subprocess.run(
            [redis_server, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "unknown"


def probe(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when the server answers PING with PONG (not -LOADING while replaying the AOF)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                buf += chunk
            return buf == b"+PONG\r\n"
    except OSError:
        return False
