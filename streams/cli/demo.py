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
import sys
import time
from argparse import Namespace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

from streams.settings import Settings
from touchpoint_tools.devstack.worker import WorkerProcess
from touchpoint_tools.simulate.crisis_replay import CrisisRun


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="stack up, a worker, simulated crisis traffic and a live view; ends by itself")
    p.add_argument("--events", type=int, default=40_000, help="simulated events to publish")
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


HOLD_LIMIT_S = 60.0  # a worker that makes no progress for this long is not waited for (its log says why)


def max_behind_records(lateness_s: int, spacing_ms: float) -> int:
    """How far (in records) the worker may fall behind the demo's publisher before the traffic is
    held: half the demand lateness in event time. The demo compresses a week into minutes, so a
    worker a few seconds behind on a slow or busy machine would otherwise be hours late in event
    time, its partitions' demand sums would arrive after their buckets closed, and the detector
    would judge holes in the data instead of the simulated demand.

    >>> max_behind_records(7200, 18_000.0)
    200
    >>> max_behind_records(600, 60_000.0)  # never below one publish batch
    100
    """
    return max(100, int(lateness_s * 1000 / 2 / spacing_ms))


def _processed(text: str) -> float:
    """Input records the worker has finished with (applied, duplicate or dead-lettered)."""
    return sum(_metric_sum(text, "touchpoint_events_total", "outcome").values())


async def _demo(args: Namespace, settings: Settings, worker_log: str) -> int:
    from streams.cli.idle import wait_idle
    from streams.cli.simulate import publish_stream
    from streams.kafka.topics import ensure_topics
    from touchpoint_tools.simulate.traffic import generate

    url = f"http://{settings.web_host}:{settings.web_port}"
    await ensure_topics(settings)
    worker = WorkerProcess(settings, Path(worker_log))
    try:
        print(f"[demo] worker pid {worker.pid}, log {worker_log}; waiting until ready ...")
        await asyncio.to_thread(worker.wait_ready, 120)
        # Eight and a half days of event time: four normal days that teach the detector the daily
        # rhythm, then four and a half days of crisis: two surges that end within two days, two shifts that persist long
        # enough (three days) to become the new normal. A week of demand in about a minute.
        run = CrisisRun.ending_now(args.events, int(time.time()) % 10_000, int(time.time() * 1000))
        start_ms, crisis_ms = run.start_ms, run.crisis_ms
        sim_args = Namespace(people=run.people, seed=run.seed, events=args.events, spacing_ms=run.spacing_ms,
                             scenario="crisis", duplicates=0.02, malformed=0.01)
        progress = [0]
        max_behind = max_behind_records(settings.demand_lateness_s, run.spacing_ms)
        print(f"[demo] publishing {args.events} events at up to {args.rate:.0f}/s (crisis scenario, 2% duplicates, "
              f"1% malformed), held while the worker is more than {max_behind} behind")
        records = generate(sim_args, start_ms, scenario_start_ms=crisis_ms)
        started = time.monotonic()
        held_s = [0.0]
        async with aiohttp.ClientSession() as session:

            async def hold(sent: int) -> None:
                began = progressed = time.monotonic()
                last = -1.0
                try:
                    while time.monotonic() - progressed < HOLD_LIMIT_S:
                        done = _processed(await _scrape(session, url))
                        if sent - done <= max_behind:
                            return
                        if done > last:
                            last, progressed = done, time.monotonic()
                        await asyncio.sleep(0.2)
                    print(f"[demo] the worker made no progress for {HOLD_LIMIT_S:.0f} s; publishing on (see {worker_log})")
                finally:
                    held_s[0] += time.monotonic() - began

            publisher = asyncio.create_task(publish_stream(settings, records, args.rate, progress, hold=hold))
            last_applied, last_t = 0.0, time.monotonic()
            while not publisher.done():
                await asyncio.sleep(2.0)
                text = await _scrape(session, url)
                outcomes = _metric_sum(text, "touchpoint_events_total", "outcome")
                now = time.monotonic()
                rate = (outcomes.get("applied", 0) - last_applied) / max(1e-6, now - last_t)
                last_applied, last_t = outcomes.get("applied", 0), now
                profiles = _metric_sum(text, "touchpoint_profiles").get("", 0)
                merges = _metric_sum(text, "touchpoint_identity_merges_total").get("", 0)
                open_alerts = _metric_sum(text, "touchpoint_demand_alerts_open").get("", 0)
                print(f"[{now - started:5.0f}s] published {progress[0]:7d} | applied {outcomes.get('applied', 0):7.0f} "
                      f"({rate:5.0f}/s) | dup {outcomes.get('duplicate', 0):4.0f} | dead {outcomes.get('dead_lettered', 0):4.0f} "
                      f"| profiles {profiles:5.0f} | merges {merges:4.0f} | open alerts {open_alerts:3.0f} | held {held_s[0]:4.0f} s")
            published = await publisher
            print("[demo] traffic done; waiting for the worker to catch up ...")
            idle = await wait_idle(settings, timeout_s=300)
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
        transitions = {k: v for k, v in _metric_sum(text, "touchpoint_demand_alert_transitions_total", "state").items() if v}
        print(f"profiles             {_metric_sum(text, 'touchpoint_profiles').get('', 0):.0f} "
              f"(identity merges {_metric_sum(text, 'touchpoint_identity_merges_total').get('', 0):.0f})")
        print(f"demand alerts        {transitions or 'none'}")
        late = _metric_sum(text, "touchpoint_demand_late_counts_total").get("", 0)
        print(f"demand sums late     {late:.0f} partial sums arrived after their bucket had closed (not counted: the demo "
              "runs a week in a minute, so a worker a second behind is an hour late in event time)")
        _print_shifts(await _alert_records(settings), run, settings)
        ok = idle and total == published
        print(f"accounting           in {published} = applied + duplicates + dead-lettered {total:.0f}: {'OK' if ok else 'MISMATCH'}")
        print("\nLook at (the HTTP pages while the worker runs: `touchpoint demo --keep-running`):")
        print(f"  {url}/oncall      the on-call page: open alerts, merges, rates")
        print(f"  {url}/metrics     Prometheus metrics")
        ns = f"TOUCHPOINT_NAMESPACE={settings.namespace}"
        print(f"  {ns} touchpoint alerts tail --from-beginning --timeout 2")
        print(f"  {ns} touchpoint profiles dump | head")
        print(f"  {ns} touchpoint profile get --id user_id:u000042")
        print(f"  {ns} touchpoint dlq summary --json")
        if args.keep_running:
            print("\n[demo] worker keeps running; Ctrl-C to stop")
            while worker.alive():
                await asyncio.sleep(1)
        return 0 if ok else 1
    finally:
        worker.stop()


async def _alert_records(settings: Settings) -> list[dict]:
    """The alert records of the run."""
    from streams.kafka.reading import read_to_end
    from streams.kafka.topics import ALERTS

    out = []
    async for record in read_to_end(settings, settings.topic(ALERTS), timeout_s=20):
        try:
            out.append(orjson.loads(record.value))
        except ValueError:
            continue
    return out


def _print_shifts(records: list[dict], run: CrisisRun, settings: Settings) -> None:
    """The injected shifts and what the alerts said about each (persisted: NEW_NORMAL, or resolved),
    and every alert checked against the simulator's ground truth (crisis_replay.py)."""
    from streams.demand.dimensions import parse_dimensions, parse_measures
    from touchpoint_tools.simulate.crisis_replay import check_alerts, ground_truth, shift_lines
    from touchpoint_tools.simulate.report import shift_report, stories

    print(f"volume rule          an alert is published once its shift moved {settings.demand_min_excess.replace(',', ', ')} "
          "(orders, units, revenue in CNY, interest events) away from the baseline, summed since it opened, "
          "beyond its largest bucket, within a day; units and revenue also 3 sd clear of their noise, and on a "
          "product or category only while its orders, interest or category moved the same way (corroboration)")
    lines, _ = shift_report(run.scenario(), stories(records), run.end_ms)
    print("shifts injected, and the alerts on their category (and category x region) keys:")
    for line in lines:
        print(f"  {line}")
    truth = ground_truth(run, parse_dimensions(settings.demand_dimensions), parse_measures(settings.demand_measures),
                         settings.demand_currency)
    verdict = check_alerts(records, truth)
    print("which shifts persisted (the shifted category's own series, per measure):")
    for line in shift_lines(verdict, run.scenario(), run.end_ms):
        print(f"  {line}")
    print(f"ground truth         {verdict.total} alerts: {len(verdict.matched)} on a series the simulator shifted by 20 % "
          f"or more in the alert's direction, {len(verdict.unmatched)} on series it did not shift")
    for story in verdict.unmatched[:20]:
        print(f"    not a real shift: {story.line()}")
    if len(verdict.unmatched) > 20:
        print(f"    ... {len(verdict.unmatched) - 20} more: TOUCHPOINT_NAMESPACE={settings.namespace} "
              "touchpoint alerts tail --from-beginning --timeout 2")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.stack import run_up

    namespace = args.namespace or "demo-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    # Hourly demand buckets: the simulated week is compressed into a minute, and the per-key
    # volumes of a small population are too thin for 5-minute buckets.
    settings = settings.with_(namespace=namespace, demand_bucket_s=3600, demand_lateness_s=7200)
    print("[demo] starting the embedded stack (first run fetches Kafka from Maven Central) ...")
    if run_up(Namespace(timeout=300.0), settings) != 0:
        return 1
    worker_log = os.path.join(settings.stack_dir, f"{namespace}-worker.log")
    try:
        return asyncio.run(_demo(args, settings, worker_log))
    except RuntimeError as exc:
        print(f"touchpoint demo: {exc}; see {worker_log}", file=sys.stderr)
        return 1
