"""``touchpoint alerts tail``: follow the alerts topic, one human-readable line per record."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from streams.kafka.client import reader
from streams.kafka.reading import topic_partitions
from streams.kafka.topics import ALERTS
from streams.settings import Settings

__all__ = ["add_parser", "format_alert"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="demand-shift alerts")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="SUBCOMMAND")
    t = asub.add_parser("tail", help="follow the alerts topic (Ctrl-C to stop)")
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest retained alert instead of new ones")
    t.add_argument("--json", action="store_true", help="print the records as JSON lines")
    t.add_argument("--timeout", type=float, default=None, help="stop after this many seconds without a new alert")
    t.add_argument("--max", type=int, default=None, help="stop after this many alerts")
    t.set_defaults(run=tail)


def format_alert(a: dict[str, Any]) -> str:
    """One line for on-call staff: when, state, direction, key, observed vs expected, severity."""
    when = a.get("bucket_start", "?")
    if when.endswith(":00Z"):
        when = when[:-4] + "Z"  # minutes are enough: buckets start on whole minutes
    expected = a.get("expected")
    if expected is None:
        vs = f"observed {a.get('observed', 0):g} (no baseline yet)"
    else:
        ratio = a["observed"] / expected if expected > 0 else float("inf")
        vs = f"observed {a['observed']:g} vs expected {expected:.0f} (x{ratio:.1f} this bucket"
        vs += f", x{a['ratio']:.1f} since open)" if a.get("ratio") is not None else ")"
    extra = f", open {a['buckets_open']} buckets" if a.get("state") in ("RESOLVED", "NEW_NORMAL") else ""
    measure = f" {a['measure']:<8}" if a.get("measure") else ""
    return f"{when} {a.get('state', '?'):<10} {a.get('direction', '?'):<8}{measure} {a.get('key', '?')}  {vs} severity {a.get('severity', '?')}{extra}"


async def tail(args: argparse.Namespace, settings: Settings) -> int:
    topic = settings.topic(ALERTS)
    consumer = reader(settings, auto_offset_reset="earliest" if args.from_beginning else "latest")
    await consumer.start()
    shown = 0
    try:
        tps = await topic_partitions(settings, [topic])
        if not tps:
            print(f"touchpoint alerts: topic {topic} does not exist yet (start a worker)", file=sys.stderr)
            return 1
        consumer.assign(tps)
        if args.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        last_seen = time.monotonic()
        while args.max is None or shown < args.max:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            records = sorted((r for rs in batches.values() for r in rs), key=lambda r: (r.timestamp, r.partition, r.offset))
            for record in records:
                try:
                    alert = orjson.loads(record.value or b"")
                except orjson.JSONDecodeError:
                    continue
                sys.stdout.write((orjson.dumps(alert).decode() if args.json else format_alert(alert)) + "\n")
                shown += 1
                if args.max is not None and shown >= args.max:
                    break
            sys.stdout.flush()
            if records:
                last_seen = time.monotonic()
            elif args.timeout is not None and time.monotonic() - last_seen >= args.timeout:
                break
    finally:
        await consumer.stop()
    return 0
