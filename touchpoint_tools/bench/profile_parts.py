"""Where a worker's CPU goes, by part of the pipeline: py-spy profiles side by side.

    python -m touchpoint_tools.bench.profile_parts ours.txt=290.5 reference.txt=324.0

Each argument is a py-spy ``--format raw`` profile (``touchpoint bench --profile FILE`` for the
worker; ``py-spy record --pid <pid> --rate 250 --format raw -o FILE`` on the reference peer's
process) and, after ``=``, the CPU per event of the same run, so every share is also turned into
us per event. Prints a Markdown table (docs/performance.md, "Session 8").

A sample goes to the first part whose marker occurs in its stack (:data:`PARTS`, most specific
first). Left out: the samples of Faust's consumer thread whose leaf is its own (C) event loop
(idle) and a peer's start-up imports.

``--own N`` adds, per profile, the N functions of ``streams/`` with the most self time: samples
whose innermost Python frame is theirs, so the C calls they make (orjson, hashing, AES) count
as theirs (docs/performance.md, "Session 10").
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from touchpoint_tools.bench.pipeline.pyspy import parse_frame

__all__ = ["PARTS", "OTHER", "classify", "shares", "table", "own_self", "own_table"]

PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("ingest: audit sealing (data keys, identity.keys, marked published)", ("IngestStage._sealed", "AuditSealer")),
    ("ingest: stage (decode, normalise, dedup + identity, bundles)", ("IngestStage.process_batch",)),
    ("profiles: ProfileStage.decide", ("ProfileStage.decide",)),
    ("profiles: activation (settle, re-evaluation timer)", ("ActivationStage", "reevaluate", "Activation.")),
    ("demand: stage and table writes", ("DemandStage", "CoalescedWrites", "demand_handler")),
    ("Faust per-record delivery (consumer drain, conductor, Stream iteration)", ("_drain_messages", "Stream.", "Conductor")),
    ("profiles: unbundle, sends, writes, changelog flush", ("ProfilesWorker", "ProfileSends", "profiles_handler", "unbundle")),
    ("demand/profiles agent loops (guard per record or run, metrics)",
     ("register.<locals>.demand", "process_run", "register.<locals>.profiles")),
    ("ingest: held-back demand counts, batch sends", ("IngestStage.flush_demand", "BatchProducer.send", "register.<locals>.process;")),
    ("commits (flush), in-order guard, watch", ("_commit", "OrderedSource", "Loop.commit", "BatchSource.run_once", "caught_up")),
    ("own consumers' fetch (aiokafka getmany, fetcher)", ("Fetcher", "AIOKafkaConsumer.getmany", "AIOKafkaConnection._read")),
    ("aiokafka producer sender", ("Sender.", "MessageAccumulator")),
    ("Redis client I/O callbacks", ("AbstractConnection", "redis")),
    ("other Faust/mode tasks and timers", ("App._task", "Service._execute_task", "LagSampler", "itertimer", "Agent._execute_actor")),
]
OTHER = "other (event loop, callbacks)"


def classify(frames: list[str]) -> str | None:
    """The part of one stack (function names, root first); None for samples left out.

    >>> classify(["run", "Agent._execute_actor", "register.<locals>.demand", "DemandStage.process_sliced"])
    'demand: stage and table writes'
    >>> classify(["run", "Agent._execute_actor", "register.<locals>.demand", "Stream.events", "Stream._c_aiter"])
    'Faust per-record delivery (consumer drain, conductor, Stream iteration)'
    >>> classify(["WorkerThread.run", "ServiceThread._start_thread"]) is None
    True
    """
    if not frames:
        return OTHER
    joined = ";".join(frames) + ";"
    if frames[-1] == "ServiceThread._start_thread" or "_find_and_load" in joined:
        return None
    for label, markers in PARTS:
        if any(m in joined for m in markers):
            return label
    return OTHER


def _stacks(raw: str) -> Iterator[tuple[list[str], int]]:
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if count.isdigit():
            yield [parse_frame(f)[0] for f in stack.split(";") if f], int(count)


def shares(raw: str) -> tuple[Counter[str], int]:
    """Samples per part and the samples counted, of one raw profile."""
    parts: Counter[str] = Counter()
    total = 0
    for frames, n in _stacks(raw):
        part = classify(frames)
        if part is not None:
            parts[part] += n
            total += n
    return parts, total


def table(profiles: list[tuple[str, str, float]]) -> str:
    """A Markdown table: per part, each profile's share and share x its CPU per event (us).

    ``profiles`` are (name, raw profile, CPU us per event of the same run).
    """
    counted = [(name, *shares(raw), cpu) for name, raw, cpu in profiles]
    lines = ["| part | " + " | ".join(f"{name}: share, us/event" for name, *_ in counted) + " |",
             "|---|" + "---|" * len(counted)]
    for label in [p for p, _ in PARTS] + [OTHER]:
        cells = [f"{100 * parts[label] / total:.1f}%, {cpu * parts[label] / total:.1f}" if total else "-"
                 for _, parts, total, cpu in counted]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| samples counted | " + " | ".join(str(total) for _, _, total, _ in counted) + " |")
    return "\n".join(lines)


def own_self(raw: str) -> tuple[Counter[str], int]:
    """Samples per function of ``streams/`` that is the innermost Python frame, and the samples
    counted (those :func:`classify` keeps).

    >>> own_self("run (streams/cli/main.py:5);decode (streams/profiles/profile.py:9) 3\\nrun (streams/cli/main.py:5);x (json/y.py:1) 1")
    (Counter({'decode (streams/profiles/profile.py)': 3}), 4)
    """
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        frames = [parse_frame(f) for f in stack.split(";") if f]
        if classify([name for name, _ in frames]) is None:
            continue
        n = int(count)
        total += n
        if frames and frames[-1][1].startswith("streams/"):
            own[f"{frames[-1][0]} ({frames[-1][1]})"] += n
    return own, total


def own_table(name: str, raw: str, cpu: float, top: int) -> str:
    """A Markdown table of the ``top`` functions of ``streams/`` by self time in one profile."""
    own, total = own_self(raw)
    lines = [f"| {name}: function of streams/ (self, C calls included) | share | us/event |", "|---|---|---|"]
    for fn, n in own.most_common(top):
        lines.append(f"| `{fn}` | {100 * n / total:.1f}% | {cpu * n / total:.1f} |")
    mine = sum(own.values())
    lines.append(f"| all of streams/ | {100 * mine / total:.1f}% | {cpu * mine / total:.1f} |" if total else "| all of streams/ | - | - |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="+", metavar="FILE=CPU_US", help="raw py-spy profile and the run's CPU us per event")
    ap.add_argument("--own", type=int, default=0, metavar="N", help="also the N functions of streams/ with the most self time")
    args = ap.parse_args(argv)
    loaded = []
    for spec in args.profiles:
        path, sep, cpu = spec.rpartition("=")
        if not sep:
            print(f"profile_parts: {spec!r}: expected FILE=CPU_US", file=sys.stderr)
            return 2
        try:
            loaded.append((Path(path).name, Path(path).read_text(), float(cpu)))
        except (OSError, ValueError) as exc:
            print(f"profile_parts: {spec!r}: {exc}", file=sys.stderr)
            return 2
    print(table(loaded))
    for name, raw, cpu in loaded if args.own > 0 else ():
        print()
        print(own_table(name, raw, cpu, args.own))
    return 0


if __name__ == "__main__":
    sys.exit(main())
