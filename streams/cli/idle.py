"""``touchpoint wait-idle``: return 0 once every consumer group of the namespace has caught up."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from streams.kafka.reading import namespace_lag
from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wait-idle", help="wait until every consumer group of the namespace has caught up")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (exit 1)")
    p.add_argument("--settle", type=float, default=1.5, help="lag must stay 0 this long (covers records still being forwarded)")
    p.set_defaults(run=run)


async def wait_idle(settings: Settings, timeout_s: float = 120.0, settle_s: float = 1.5) -> bool:
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    while time.monotonic() < deadline:
        lag = await namespace_lag(settings)
        now = time.monotonic()
        if lag.total == 0:
            idle_since = idle_since or now
            if now - idle_since >= settle_s:
                return True
        else:
            idle_since = None
        await asyncio.sleep(0.3)
    return False


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if await wait_idle(settings, args.timeout, args.settle):
        return 0
    lag = await namespace_lag(settings)
    print(f"touchpoint wait-idle: still behind after {args.timeout:.0f}s: {dict(lag)}", file=sys.stderr)
    return 1
