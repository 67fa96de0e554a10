"""``touchpoint bench``: the end-to-end benchmark against the real broker and Redis, with peers.

Prints a human table, then one JSON line last (``--json``: the JSON line only). Progress goes
to stderr. See docs/performance.md for what each figure measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="end-to-end benchmark: throughput, latency, CPU, memory, hops, peers")
    p.add_argument("--events", type=int, help="events preloaded per throughput run (default 150000; --quick 4000)")
    p.add_argument("--quick", action="store_true", help="a small run (about a minute): checks the harness, not the figures")
    p.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    p.add_argument("--latency-rate", type=float, default=5000.0, help="offered load of the latency run, events/s")
    p.add_argument("--latency-seconds", type=float, help="length of the latency run (default 20; --quick 4)")
    p.add_argument("--no-peers", action="store_true", help="skip the peers (decode-only floor, no-framework reference, Quix Streams)")
    p.add_argument("--no-two-workers", action="store_true", help="skip the 2-worker throughput run")
    p.add_argument("--profile", metavar="FILE", help="also profile one 1-worker drain with py-spy (collapsed stacks to FILE)")
    p.add_argument("--keep", action="store_true", help="keep the bench namespaces (topics, Redis keys) afterwards")
    p.add_argument("--workdir", help="where worker logs and peer state go (default: a new temp dir)")
    p.set_defaults(run=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError
    from touchpoint_tools.bench.pipeline.harness import BenchOptions, run_bench
    from touchpoint_tools.bench.pipeline.report import human_table, json_line

    events = args.events if args.events is not None else (4_000 if args.quick else 150_000)
    if events < 100:
        raise UsageError("--events must be at least 100")
    if args.latency_rate <= 0:
        raise UsageError("--latency-rate must be positive")
    opts = BenchOptions(events=events, latency_rate=args.latency_rate,
                        latency_seconds=args.latency_seconds or (3.0 if args.quick else 20.0),
                        latency_warmup_s=1.0 if args.quick else 2.0,
                        two_workers=not args.no_two_workers, peers=not args.no_peers, keep=args.keep,
                        profile=args.profile, phase_timeout_s=120.0 if args.quick else 600.0,
                        drain_cap_s=40.0 if args.quick else 150.0, latency_drain_s=10.0 if args.quick else 30.0)
    if args.workdir:
        opts.workdir = Path(args.workdir)
        opts.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[bench {time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    log(f"worker logs and peer state in {opts.workdir}")
    result = await run_bench(settings, opts, log)
    result["bench_seconds"] = time.monotonic() - started
    if not args.json:
        print(human_table(result))
    print(json_line(result), flush=True)
    return 0
