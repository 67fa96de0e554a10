"""Load test of the HTTP collector on loopback: requests/s and latency percentiles.

Starts ``touchpoint collect`` as a subprocess on a free 127.0.0.1 port against a real broker,
sends a fixed number of requests from a fixed number of concurrent clients, and stops by itself
(after the requests, or at the time cap). Every 200 means the broker acknowledged the events
(acks=all, idempotent producer), so the latency includes the Kafka round trip.

    touchpoint stack up
    .venv/bin/python touchpoint_tools/bench/collector_load.py --requests 5000 --concurrency 32 --events-per-request 10

Figures go to stdout, the last line is JSON. The bench uses its own namespace and deletes its
topics at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streams.settings import Settings  # noqa: E402

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
WRITE_KEY = "bench-write-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def event(i: int, j: int) -> dict:
    return {"type": "track", "messageId": f"bench-{i}-{j}-{uuid.uuid4().hex[:8]}", "userId": f"u{i % 1000}",
            "event": "Product Viewed", "channel": "web", "timestamp": "2026-02-03T10:15:00Z",
            "properties": {"products": [{"product_id": f"p{j}", "category": "masks", "price": 3.3, "quantity": 1}]}}


async def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"collector exited with {proc.returncode}")
            try:
                async with session.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"collector not ready within {timeout_s:.0f}s (is the broker up? `touchpoint stack up`)")


async def load(url: str, requests: int, concurrency: int, per_request: int, max_seconds: float) -> dict:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(), "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    deadline = time.monotonic() + max_seconds
    path = "/v1/batch" if per_request > 1 else "/v1/track"

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < requests and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            body = orjson.dumps({"batch": [event(i, j) for j in range(per_request)]} if per_request > 1 else event(i, 0))
            started = time.perf_counter()
            try:
                async with session.post(url + path, data=body, headers=auth) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = 0
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies), "ok": ok, "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "concurrency": concurrency, "events_per_request": per_request, "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1), "events_per_s": round(ok * per_request / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2), "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None, "stopped_by_time_cap": len(latencies) < requests,
    }


async def delete_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.kafka.client import client_options

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.namespace + ".")]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def main() -> int:
    base = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=base.kafka_bootstrap, help="Kafka bootstrap on loopback (default: TOUCHPOINT_KAFKA_BOOTSTRAP)")
    parser.add_argument("--requests", type=int, default=5000, help="requests to send in all")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--events-per-request", type=int, default=1, help="1 = POST /v1/track; more = POST /v1/batch")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap: stop sending after this long")
    parser.add_argument("--keep", action="store_true", help="keep the bench namespace's topics")
    args = parser.parse_args()
    if any(host.rsplit(":", 1)[0] not in LOOPBACK for host in args.bootstrap.split(",")):
        parser.error("this bench runs on loopback only: --bootstrap must be 127.0.0.1:PORT")
    if min(args.requests, args.concurrency, args.events_per_request) < 1 or not 0 < args.max_seconds <= 600:
        parser.error("--requests, --concurrency and --events-per-request must be >= 1, --max-seconds in (0, 600]")

    port = free_port()
    settings = base.with_(namespace=f"bench{uuid.uuid4().hex[:8]}", kafka_bootstrap=args.bootstrap, write_keys=WRITE_KEY,
                          collector_rate_per_s=1e9, collector_burst=10**9)  # measure the collector, not the limiter
    env = {**os.environ, **settings.to_env(), "TOUCHPOINT_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "collect", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(url, proc, 60))
        asyncio.run(load(url, 200, args.concurrency, args.events_per_request, 30))  # warm-up: connections, metadata
        result = asyncio.run(load(url, args.requests, args.concurrency, args.events_per_request, args.max_seconds))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if not args.keep:
            asyncio.run(delete_topics(settings))
    print(f"collector on {url}, broker {args.bootstrap}: {result['requests']} requests x {args.events_per_request} events, "
          f"concurrency {args.concurrency}")
    print(f"  {result['requests_per_s']} requests/s, {result['events_per_s']} events/s acknowledged by Kafka")
    print(f"  latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms; statuses {result['statuses']}")
    print(orjson.dumps(result).decode())
    return 0 if result["ok"] == result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
