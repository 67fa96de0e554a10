"""``touchpoint simulate``: publish realistic synthetic touchpoint traffic, with demand shifts."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from streams.kafka.client import client_options
from streams.kafka.topics import INPUT, ensure_topics
from streams.settings import Settings
from touchpoint_tools.simulate.population import SCENARIOS
from touchpoint_tools.simulate.traffic import default_start_ms, generate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="publish synthetic touchpoint traffic from a seeded population")
    p.add_argument("--events", type=int, default=10_000, help="how many events to publish")
    p.add_argument("--people", type=int, default=1_000, help="population size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, default=0.0, help="events per second of wall time (0 = as fast as possible)")
    p.add_argument("--start", help="event time of the first event, ISO 8601 (default: so the last event is about now)")
    p.add_argument("--spacing-ms", type=float, default=1000.0, help="mean event-time gap between events (accelerates time when small)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="none", help="demand shifts to inject")
    p.add_argument("--scenario-start", help="event time the scenario's shifts are timed from, ISO 8601 (default: the first event); "
                   "the detector alerts only on keys with two days of history")
    p.add_argument("--duplicates", type=float, default=0.0, help="fraction of events re-sent with the same messageId")
    p.add_argument("--malformed", type=float, default=0.0, help="fraction of extra malformed records")
    p.set_defaults(run=run)


def parse_start(text: str | None, events: int, spacing_ms: float) -> int:
    from streams.cli.errors import UsageError

    if text is None:
        return default_start_ms(events, spacing_ms, int(time.time() * 1000))  # the last event lands about now
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--start {text!r}: expected an ISO 8601 time such as 2026-03-01T00:00:00Z") from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


async def publish_stream(settings: Settings, records: Iterator[bytes], rate: float, progress: list[int] | None = None,
                         hold: Callable[[int], Awaitable[None]] | None = None, hold_every: int = 100) -> int:
    """Publish records, paced to ``rate`` per second when positive; return the count.

    ``hold(sent)``, awaited every ``hold_every`` records once they are acknowledged, may delay the
    rest (``touchpoint demo`` waits there while the worker is too far behind).
    """
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True, linger_ms=10)
    await producer.start()
    topic = settings.topic(INPUT)
    sent = 0
    started = time.monotonic()
    pending = []
    try:
        for raw in records:
            pending.append(await producer.send(topic, value=raw))
            sent += 1
            if progress is not None:
                progress[0] = sent
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.01:
                    await asyncio.sleep(ahead)
            if len(pending) >= 2000 or (hold is not None and sent % hold_every == 0):
                await asyncio.gather(*pending)
                pending.clear()
            if hold is not None and sent % hold_every == 0:
                held = time.monotonic()
                await hold(sent)
                started += time.monotonic() - held  # the rate applies to the time not held
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError

    if args.events < 0 or args.people <= 0 or not 0 <= args.duplicates <= 1 or not 0 <= args.malformed <= 1:
        raise UsageError("--events >= 0, --people > 0, and --duplicates/--malformed between 0 and 1")
    start_ms = parse_start(args.start, args.events, args.spacing_ms)
    scenario_ms = None if args.scenario_start is None else parse_start(args.scenario_start, args.events, args.spacing_ms)
    await ensure_topics(settings)
    sent = await publish_stream(settings, generate(args, start_ms, scenario_ms), args.rate)
    print(f"published {sent} records to {settings.topic(INPUT)}", file=sys.stderr)
    return 0
