"""Slowloris against a real ``touchpoint collect`` process on loopback (issue 21 Medium 5).

Before the fix, 220 connections that each sent half a request header, against a collector
limited to 200 file descriptors, blocked every real request (47 s measured) and asyncio logged
"socket.accept() out of system resource" in a loop (159 MB in 50 s). Here the collector runs
with the same 200-descriptor limit, a connection limit of 100 and a 3 s header timeout; the test
holds 220 half-sent connections open and checks that real requests are answered at once, that
the log stays small, and that a lone half-sent connection is closed after the header timeout.
Bounded: about 15 s, loopback only, no Kafka needed (the probes are /healthz and /readyz).
"""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.fixtures.stack import ROOT, free_port

pytestmark = pytest.mark.system

HALF_OPEN = 220
FD_LIMIT = 200


def _limit_fds() -> None:  # runs in the child before exec
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))


def _get(port: int, path: str, timeout_s: float = 5.0) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        return conn.getresponse().status, time.monotonic() - started
    finally:
        conn.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.fixture
def collector(tmp_path):
    port = free_port()
    log_path = tmp_path / "collector.log"
    env = {**os.environ, "TOUCHPOINT_NAMESPACE": "slowloris", "TOUCHPOINT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "TOUCHPOINT_COLLECTOR_PORT": str(port), "TOUCHPOINT_COLLECTOR_MAX_CONNECTIONS": "100",
           "TOUCHPOINT_COLLECTOR_HEADER_TIMEOUT_S": "3", "TOUCHPOINT_COLLECTOR_BODY_TIMEOUT_S": "3"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "collect", "--allow-no-auth"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_limit_fds)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get(port, "/healthz", 1)
            break
        except OSError:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            time.sleep(0.2)
    try:
        yield port, log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_half_sent_connections_do_not_block_real_requests(collector):
    port, log_path = collector
    started = time.monotonic()
    attackers: list[socket.socket] = []
    try:
        for _ in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic")  # never finished
            attackers.append(sock)
        time.sleep(0.5)
        answers = [_get(port, "/healthz") for _ in range(20)] + [_get(port, "/readyz") for _ in range(5)]
        statuses = sorted({status for status, _ in answers})
        slowest = max(seconds for _, seconds in answers)
        assert statuses == [200, 503], answers  # healthz 200; readyz 503: no Kafka here, and it says so
        assert slowest < 4.0, answers  # before the fix: none answered within 5 s
        evicted = sum(_closed_by_peer(s) for s in attackers)
        assert evicted >= HALF_OPEN - 100, evicted  # the connection limit closed the oldest half-sent ones
    finally:
        for sock in attackers:
            sock.close()
    log_bytes = log_path.stat().st_size
    assert log_bytes < 50_000, log_path.read_text()[-3000:]
    print(f"\n[slowloris] {HALF_OPEN} half-sent connections, fd limit {FD_LIMIT}, connection limit 100: 25 real requests "
          f"answered, slowest {slowest * 1000:.0f} ms; {evicted} half-sent connections closed; log {log_bytes} bytes; "
          f"{time.monotonic() - started:.1f}s")


def test_a_half_sent_header_is_closed_after_the_header_timeout(collector):
    port, _ = collector
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")
        started = time.monotonic()
        sock.settimeout(10)
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        waited = time.monotonic() - started
    finally:
        sock.close()
    assert data == b"" and 2.0 <= waited <= 7.0, (data, waited)  # 3 s setting (aiohttp may round timers up)
