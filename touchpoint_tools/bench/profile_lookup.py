"""Benchmark of profile lookup: HTTP latency on live workers, and profile value sizes.

Starts the embedded stack if it is not running (``touchpoint stack up``), runs two workers in a
fresh namespace, publishes simulated traffic, waits until idle, then:

- times sequential ``GET /profiles?id=TYPE:VALUE`` (Redis resolution + routing + render) and
  ``GET /profiles/{id}`` requests against one worker, split into keys that worker owns
  (local) and keys the other worker owns (proxied one hop), with a keep-alive client;
- reads the ``profiles`` changelog and reports the serialized size distribution of live values.

The last line printed is one JSON object. Usage::

    .venv/bin/python touchpoint_tools/bench/profile_lookup.py [--people 2000] [--events 40000] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streams.cli.idle import wait_idle  # noqa: E402
from streams.cli.profile import dump_profiles  # noqa: E402
from streams.cli.send import publish  # noqa: E402
from streams.kafka.topics import INPUT, ensure_topics  # noqa: E402
from streams.profiles.profile import is_tomb_bytes  # noqa: E402
from streams.profiles.views import SERVED_BY  # noqa: E402
from streams.settings import Settings  # noqa: E402
from touchpoint_tools.devstack.stack import StackConfig, up  # noqa: E402
from touchpoint_tools.simulate.population import Population  # noqa: E402

START_MS = 1_767_225_600_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(settings: Settings, log_dir: Path, n: int) -> subprocess.Popen:
    log = open(log_dir / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "streams.cli.main", "worker"], env={**os.environ, **settings.to_env()},
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(settings: Settings, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"worker on port {settings.web_port} not ready in {timeout_s}s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def time_requests(base: str, paths: list[str]) -> list[tuple[float, int, bool]]:
    """(milliseconds, status, routed) per request, sequential on one keep-alive connection."""
    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as client:
        for path in paths[:50]:  # warm up connections and caches
            async with client.get(base + path) as resp:
                await resp.read()
        for path in paths:
            t0 = time.perf_counter()
            async with client.get(base + path) as resp:
                await resp.read()
                status = resp.status
                routed = resp.headers.get(SERVED_BY, base).rstrip("/") != base
            out.append(((time.perf_counter() - t0) * 1000, status, routed))
    return out


def summary(samples: list[tuple[float, int, bool]]) -> dict[str, float]:
    ms = [m for m, status, _ in samples if status == 200]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(pct(ms, 0.5), 3), "p90_ms": round(pct(ms, 0.9), 3), "p99_ms": round(pct(ms, 0.99), 3),
            "max_ms": round(max(ms), 3), "non_200": sum(1 for _, s, _ in samples if s != 200)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--events", type=int, default=40000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    base_settings = Settings.from_env()
    up(StackConfig.from_settings(base_settings))
    ports = [free_port(), free_port()]
    settings = base_settings.with_(namespace=f"bench{uuid.uuid4().hex[:8]}", web_port=ports[0], partitions=4,
                                   data_dir=tempfile.mkdtemp(prefix="tp-bench-"), log_level="warning")
    await ensure_topics(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="tp-bench-logs-"))
    workers = [start_worker(settings.with_(web_port=p), log_dir, i) for i, p in enumerate(ports)]
    try:
        for p in ports:
            wait_ready(settings.with_(web_port=p))
        population = Population(args.people, seed=args.seed)
        events = [orjson.dumps(e) for e in population.events(args.events, START_MS, 2000)]
        t0 = time.monotonic()
        await publish(settings, settings.topic(INPUT), events)
        if not await wait_idle(settings, timeout_s=600, settle_s=2.0):
            raise SystemExit(f"not idle after 600 s; logs in {log_dir}")
        processing_s = time.monotonic() - t0
        for p in ports:
            wait_ready(settings.with_(web_port=p))

        latest = await dump_profiles(settings)
        live = {k.decode(): v for k, v in latest.items() if not is_tomb_bytes(v)}
        sizes = sorted(len(v) for v in live.values())

        pids = sorted(live)
        by_id = [f"/profiles/{pid}" for pid in pids]
        people = population.people
        by_ident = [f"/profiles?id={quote('user_id:' + people[i % len(people)].user_id)}" for i in range(len(people))]
        n = args.requests
        base = f"http://127.0.0.1:{ports[0]}"
        paths_id = [by_id[i % len(by_id)] for i in range(n)]
        paths_ident = [by_ident[i % len(by_ident)] for i in range(n)]
        r_id = await time_requests(base, paths_id)
        r_ident = await time_requests(base, paths_ident)
        local = [x for x in r_id if not x[2]]
        routed = [x for x in r_id if x[2]]
        result = {
            "bench": "profile_lookup", "events": len(events), "people": args.people, "profiles": len(live), "workers": 2,
            "partitions": settings.partitions, "processing_s": round(processing_s, 1),
            "by_profile_id": summary(r_id), "by_profile_id_local": summary(local), "by_profile_id_routed": summary(routed),
            "by_identifier": summary(r_ident),
            "profile_bytes": {"n": len(sizes), "min": sizes[0], "p10": pct(sizes, 0.1), "p50": pct(sizes, 0.5), "p90": pct(sizes, 0.9),
                              "p99": pct(sizes, 0.99), "max": sizes[-1], "mean": round(statistics.fmean(sizes))},
            "events_per_profile_p50": pct([orjson.loads(live[k])["n"] for k in live], 0.5),
        }
        print(orjson.dumps(result).decode())
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()


if __name__ == "__main__":
    asyncio.run(main())
