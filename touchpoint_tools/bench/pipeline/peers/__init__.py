"""Peers run on the same preloaded topic in the same bench run, each as its own process.

Each peer is ``python -m touchpoint_tools.bench.pipeline.peers.<name> --topic T --group G --expect N`` with the
``TOUCHPOINT_*`` environment of the bench, consumes ``N`` records from the beginning of ``T``
with its own consumer group, and prints one JSON line last: ``events``, ``valid``, ``seconds``
(first record received to the last one fully processed), ``events_per_s``, ``cpu_s`` and
``cpu_us_per_event`` (``time.process_time`` of the whole process, every thread, over the same
window), and ``timed_out``.
"""

from __future__ import annotations

import argparse

__all__ = ["peer_args", "peer_result"]


def peer_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--expect", type=int, required=True, help="records to consume before stopping")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument("--state-dir", default=None, help="local state directory (Quix)")
    return p


def peer_result(events: int, valid: int, seconds: float, cpu_s: float, timed_out: bool, **extra: object) -> dict[str, object]:
    return {
        "events": events, "valid": valid, "seconds": seconds,
        "events_per_s": events / seconds if seconds > 0 else None,
        "cpu_s": cpu_s, "cpu_us_per_event": cpu_s / events * 1e6 if events else None,
        "timed_out": timed_out, **extra,
    }
