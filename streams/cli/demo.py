"""``touchpoint demo``: the main job, end to end on the embedded stack.

Starts the stack, one worker, publishes simulated crisis traffic (with duplicates and malformed
records), shows live what flows where, and ends by itself with a summary, the accounting check
(in = applied + duplicates + dead-lettered) and the URLs to look at.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from argparse import Namespace
from datetime import UTC, datetime

import aiohttp

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="stack up, a worker, simulated crisis traffic and a live view; ends by itself")
    p.add_argument("--events", type=int, default=30_000, help="simulated events to publish")
    p.add_argument("--rate", type=float, default=500.0, help="events per second of wall time")
    p.add_argument("--namespace", help="namespace to run in (default: a fresh demo-<time> one)")
    p.add_argument("--keep-running", action="store_true", help="leave the worker running after the summary (Ctrl-C stops it)")
    p.set_defaults(run=run)


def _metric_sum(text: str, name: str, label: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for match in re.finditer(rf"^{name}(?:{{([^}}]*)}})? ([0-9.e+-]+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        key = labels.get(label, "") if label else ""
        out[key] = out.get(key, 0.0) + float(match.group(2))
    return out


async def _scrape(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return ""


async def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with code {proc.returncode}")
            try:
                async with session.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the worker was not ready within {timeout_s:.0f}s")


async def _demo(args: Namespace, settings: Settings, worker_log: str) -> int:
    from streams.cli.idle import wait_idle
    from streams.cli.simulate import generate, publish_stream
    from streams.kafka.topics import ensure_topics

    url = f"http://{settings.web_host}:{settings.web_port}"
    await ensure_topics(settings)
    env = {**os.environ, **settings.to_env()}
    log_handle = open(worker_log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "worker"], env=env, stdout=log_handle,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        print(f"[demo] worker pid {proc.pid}, log {worker_log}; waiting until ready ...")
        await _wait_ready(url, proc, 120)
        # Four days of event time in the traffic window: a crisis unfolds in about a minute.
        span_ms = 4 * 86_400_000
        spacing = span_ms / max(1, args.events) / 1.6
        start_ms = int(time.time() * 1000) - span_ms
        sim_args = Namespace(people=2000, seed=int(time.time()) % 10_000, events=args.events, spacing_ms=spacing,
                             scenario="crisis", duplicates=0.02, malformed=0.01)
        progress = [0]
        print(f"[demo] publishing {args.events} events at {args.rate:.0f}/s (crisis scenario, 2% duplicates, 1% malformed)")
        publisher = asyncio.create_task(publish_stream(settings, generate(sim_args, start_ms), args.rate, progress))
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            last_applied, last_t = 0.0, time.monotonic()
            while not publisher.done():
                await asyncio.sleep(2.0)
                text = await _scrape(session, url)
                outcomes = _metric_sum(text, "touchpoint_events_total", "outcome")
                now = time.monotonic()
                rate = (outcomes.get("applied", 0) - last_applied) / max(1e-6, now - last_t)
                last_applied, last_t = outcomes.get("applied", 0), now
                print(f"[{now - started:5.0f}s] published {progress[0]:7d} | applied {outcomes.get('applied', 0):7.0f} "
                      f"({rate:6.0f}/s) | duplicates {outcomes.get('duplicate', 0):5.0f} | dead letters {outcomes.get('dead_lettered', 0):4.0f}")
            published = await publisher
            print("[demo] traffic done; waiting for the worker to catch up ...")
            idle = await wait_idle(settings, timeout_s=60)
            text = await _scrape(session, url)
        outcomes = _metric_sum(text, "touchpoint_events_total", "outcome")
        reasons = {k: v for k, v in _metric_sum(text, "touchpoint_dead_letters_total", "reason").items() if v}
        total = sum(outcomes.values())
        print("\n=== Touchpoint demo summary ===")
        print(f"namespace            {settings.namespace}")
        print(f"published            {published}")
        for outcome in ("applied", "duplicate", "dead_lettered"):
            print(f"{outcome:20s} {outcomes.get(outcome, 0):.0f}")
        print(f"dead letters by reason {reasons}")
        ok = idle and total == published
        print(f"accounting           in {published} = applied + duplicates + dead-lettered {total:.0f}: {'OK' if ok else 'MISMATCH'}")
        print("\nLook at:")
        print(f"  {url}/metrics     Prometheus metrics")
        print(f"  {url}/readyz      readiness")
        print(f"  TOUCHPOINT_NAMESPACE={settings.namespace} touchpoint dlq summary --json")
        if args.keep_running:
            print("\n[demo] worker keeps running; Ctrl-C to stop")
            while proc.poll() is None:
                await asyncio.sleep(1)
        return 0 if ok else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log_handle.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.stack import run_up

    namespace = args.namespace or "demo-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    settings = settings.with_(namespace=namespace)
    print("[demo] starting the embedded stack (first run fetches Kafka from Maven Central) ...")
    if run_up(Namespace(timeout=300.0), settings) != 0:
        return 1
    worker_log = os.path.join(settings.stack_dir, f"{namespace}-worker.log")
    try:
        return asyncio.run(_demo(args, settings, worker_log))
    except RuntimeError as exc:
        print(f"touchpoint demo: {exc}; see {worker_log}", file=sys.stderr)
        return 1
