"""One whole bench run: throughput (1 and 2 workers), latency at a fixed load, CPU, memory, hops,
and the peers, each measurement in a fresh namespace on the real broker and Redis.

Throughput. Workers start on an empty, fresh namespace and are waited for until every one is
ready with a stable assignment; then they are paused (SIGSTOP), the input topic is preloaded,
and they are resumed (SIGCONT). Start-up, group join and table recovery are thus outside the
measurement. The end offsets of every output topic of the namespace (profile-events,
identity.changes, demand-counts, the DLQ, alerts, the table changelogs) are sampled every
0.1 s; the window runs from the first output record to the last one (midpoints between
samples), and ends only when the group has committed everything and no offset has moved for
the settle time. events/s = preloaded records / window.

CPU. utime+stime from /proc of the worker processes, the broker and Redis (pids from the stack's
pid files), from just before SIGCONT to the sample where the outputs reached their final
offsets, divided by the preloaded records.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.kafka import topics as T
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from touchpoint_tools.bench.pipeline import procstat
from touchpoint_tools.bench.pipeline.figures import batching, hops, memory, per_event_us, redis_keys, stages_present
from touchpoint_tools.bench.pipeline.latency import measure_latency
from touchpoint_tools.bench.pipeline.machine import ensure_stack, machine_info, stack_pids
from touchpoint_tools.bench.pipeline.peering import peer_python, run_peer
from touchpoint_tools.bench.pipeline.report import evaluate_targets
from touchpoint_tools.bench.pipeline.stats import rate, ratio
from touchpoint_tools.bench.pipeline.topics import Kafka, OffsetSamples, delete_namespace
from touchpoint_tools.bench.pipeline.workers import WorkerProc, free_port, wait_all_ready
from touchpoint_tools.bench.pipeline.workload import make_records, preload

__all__ = ["BenchOptions", "run_bench", "Drain"]


@dataclass
class BenchOptions:
    events: int = 150_000
    latency_rate: float = 5_000.0
    latency_seconds: float = 20.0
    latency_warmup_s: float = 2.0
    latency_drain_s: float = 30.0     # how long to wait for the last events after the offered load ends
    two_workers: bool = True
    peers: bool = True
    keep: bool = False
    profile: str | None = None        # py-spy raw output path: profile one extra 1-worker drain
    settle_s: float = 2.0
    drain_cap_s: float = 150.0        # a drain not idle by then is cut: rate from committed input offsets
    phase_timeout_s: float = 600.0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="touchpoint-bench-")))


@dataclass
class Drain:
    """What one throughput run measured."""

    workers: int
    events: int
    seconds: float | None
    events_per_s: float | None
    cpu: dict[str, float | None]
    stages: list[str]
    topic_records: dict[str, int]
    rss_before: int | None = None
    rss_after: int | None = None
    preload_s: float = 0.0
    settings: Settings | None = None
    complete: bool = True             # False: cut at drain_cap_s; events = input records committed by then


class Bench:
    def __init__(self, base: Settings, opts: BenchOptions, log: Callable[[str], None]) -> None:
        self.base = base
        self.opts = opts
        self.log = log
        self.run_id = uuid.uuid4().hex[:6]
        self.namespaces: list[Settings] = []
        self.pids = stack_pids(base)
        self.notes: list[str] = []

    # -- helpers ---------------------------------------------------------------------------
    def fresh(self, tag: str) -> Settings:
        ns = f"{self.base.namespace}-bench{self.run_id}-{tag}"
        s = self.base.with_(namespace=ns, partitions=max(2, self.base.partitions), web_port=free_port(),
                            data_dir=str(self.opts.workdir / ns), session_timeout_s=60.0)
        self.namespaces.append(s)
        return s

    async def start_workers(self, settings: Settings, n: int, tag: str) -> list[WorkerProc]:
        await ensure_topics(settings)
        workers = []
        for i in range(n):
            s = settings if i == 0 else settings.with_(web_port=free_port())
            workers.append(WorkerProc(s, self.opts.workdir / f"{tag}-worker{i}.log"))
        try:
            await asyncio.to_thread(wait_all_ready, workers, 180.0)
        except BaseException:
            for w in workers:
                w.stop()
            raise
        return workers

    # -- throughput ------------------------------------------------------------------------
    async def drain(self, records: list[bytes], n_workers: int, tag: str, on_resume: Callable[[list[WorkerProc]], Any] | None = None) -> Drain:
        settings = self.fresh(tag)
        self.log(f"[{tag}] starting {n_workers} worker(s) in namespace {settings.namespace}")
        workers = await self.start_workers(settings, n_workers, tag)
        try:
            async with Kafka(settings) as k:
                ns_topics = await k.topics(settings.namespace + ".")
                input_topic = settings.topic(T.INPUT)
                outputs = [t for t in ns_topics if t != input_topic]
                out_tps = await k.partitions(outputs)
                in_tps = await k.partitions([input_topic])
                stages = stages_present(ns_topics, settings)
                for w in workers:
                    w.pause()
                rss_before = sum(procstat.rss_bytes(w.pid) or 0 for w in workers) or None
                self.log(f"[{tag}] workers paused; preloading {len(records):,} events")
                preload_s = await preload(settings, input_topic, records)
                self.log(f"[{tag}] preloaded in {preload_s:.1f}s; resuming workers")
                names = {f"worker{i}": w.pid for i, w in enumerate(workers)} | self.pids
                samples = OffsetSamples()
                cpu_samples: list[dict[str, float | None]] = []

                def sample_cpu() -> dict[str, float | None]:
                    return {name: procstat.cpu_seconds(pid) for name, pid in names.items()}

                base_ends = await k.ends(out_tps)
                cpu0 = sample_cpu()
                samples.add(time.perf_counter(), sum(base_ends.values()))
                cpu_samples.append(cpu0)
                for w in workers:
                    w.resume()
                extra = on_resume(workers) if on_resume else None
                resumed = time.perf_counter()
                stable_since = resumed
                last_check = 0.0
                caught_up = False
                cut_at: float | None = None
                processed = len(records)
                while True:
                    await asyncio.sleep(0.1)
                    ends = await k.ends(out_tps)
                    now = time.perf_counter()
                    total = sum(ends.values())
                    if total != samples.totals[-1]:
                        stable_since = now
                    samples.add(now, total)
                    cpu_samples.append(sample_cpu())
                    if now - stable_since >= self.opts.settle_s and now - last_check >= 0.5:
                        last_check = now
                        # The input is read by the ingest service's group, the rest by Faust's group.
                        caught_up = (await k.group_caught_up(settings.ingest_group, in_tps)
                                     and await k.group_caught_up(settings.app_id, []))
                        if caught_up and total > samples.totals[0]:
                            break
                    if now - resumed > self.opts.drain_cap_s:
                        committed = await k.committed(settings.app_id)
                        ingested = await k.committed(settings.ingest_group)
                        processed = sum(ingested.get(tp, 0) for tp in in_tps)
                        cut_at = time.perf_counter()
                        downstream = [tp for tp in committed if tp not in in_tps]
                        ends_now = await k.ends(downstream)
                        behind = sum(max(0, ends_now[tp] - committed[tp]) for tp in downstream)
                        self.notes.append(f"{tag}: not idle {self.opts.drain_cap_s:.0f}s after resuming; cut there: "
                                          f"rate and CPU from the {processed:,} input records committed by then "
                                          f"(downstream stages {behind:,} records behind)")
                        break
                    for w in workers:
                        if not w.alive():
                            raise RuntimeError(f"worker {w.pid} died during the drain:\n{w.log_tail()}")
                if extra is not None:
                    await extra
                window = samples.window()
                final_idx = samples.totals.index(samples.totals[-1]) if cut_at is None else len(samples.totals) - 1
                if cut_at is not None and window is not None:
                    window = (window[0], cut_at)
                cpu1 = cpu_samples[final_idx]
                cpu = {name: (None if cpu1[name] is None or cpu0[name] is None else cpu1[name] - cpu0[name]) for name in names}
                rss_after = sum(procstat.rss_bytes(w.pid) or 0 for w in workers) or None
                topic_records = await k.record_counts(await k.topics(settings.namespace + "."))
                seconds = window[1] - window[0] if window else None
                eps = rate(processed, seconds) if seconds else None
                self.log(f"[{tag}] drained {processed:,} events in {seconds or 0:.2f}s: {eps or 0:,.0f} ev/s"
                         + ("" if cut_at is None else " (cut: not idle)"))
                return Drain(n_workers, processed, seconds, eps, cpu, stages, topic_records, rss_before, rss_after,
                             preload_s, settings, cut_at is None)
        finally:
            for w in workers:
                w.stop()

    # -- profiling -------------------------------------------------------------------------
    async def profile(self, records: list[bytes]) -> dict[str, Any]:
        from touchpoint_tools.bench.pipeline import pyspy

        path = Path(self.opts.profile or "profile.txt")
        procs: list[subprocess.Popen] = []

        def attach(workers: list[WorkerProc]) -> Any:
            cmd = [pyspy.executable(), "record", "--pid", str(workers[0].pid), "--rate", "250", "--format", "raw",
                   "-o", str(path)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            return None

        drain = await self.drain(records, 1, "prof", on_resume=attach)
        for p in procs:
            p.send_signal(2)  # SIGINT: py-spy writes its output and exits
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if not path.exists():
            err = procs[0].stderr.read().decode(errors="replace") if procs and procs[0].stderr else ""
            return {"error": f"py-spy wrote no profile: {err[-400:]}"}
        summary = pyspy.summarize(path.read_text())
        summary["path"] = str(path)
        summary["events_per_s_while_profiled"] = drain.events_per_s
        return summary

    async def cleanup(self) -> None:
        if self.opts.keep:
            return
        for s in self.namespaces:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delete_namespace(s), 90)


PEERS = ("decode_floor", "reference", "quixstreams")


async def run_peers(bench: Bench, d1: Drain, n: int) -> dict[str, Any]:
    """The peers on the 1-worker run's preloaded input topic, one after the other, each in its own
    process and consumer group. The reference writes into a fresh namespace of its own: in the
    1-worker run's Redis namespace every event would already be a duplicate."""
    if not bench.opts.peers:
        return {name: {"events_per_s": None, "skipped": True} for name in PEERS}
    s = d1.settings
    assert s is not None
    opts, log, topic = bench.opts, bench.log, s.topic(T.INPUT)
    ref = bench.fresh("ref")
    return {
        "decode_floor": await run_peer("decode_floor", s, f"{s.namespace}.bench-floor", n, opts, log),
        "reference": await run_peer("reference", ref, f"{ref.namespace}.bench-reference", n, opts, log, topic=topic),
        "quixstreams": await run_peer("quix_app", s, f"{s.namespace}.bench-quix", n, opts, log),
    }


async def run_bench(base: Settings, opts: BenchOptions, log: Callable[[str], None]) -> dict[str, Any]:
    await asyncio.to_thread(ensure_stack, base, log)
    if opts.profile:  # fail before the runs, not after them
        from touchpoint_tools.bench.pipeline import pyspy

        try:
            pyspy.executable()
        except FileNotFoundError:
            await asyncio.to_thread(peer_python, "quix_app", log)  # the bench extra (py-spy included)
            pyspy.executable()
    bench = Bench(base, opts, log)
    result: dict[str, Any] = {"events": opts.events, "machine": machine_info(), "notes": bench.notes}
    try:
        log(f"generating {opts.events:,} events from the simulator's population")
        records = make_records(opts.events)
        d1 = await bench.drain(records, 1, "w1")
        result["stages"] = d1.stages
        result["events_per_s"] = d1.events_per_s
        result["drain_seconds"] = d1.seconds
        result["drain_complete"] = d1.complete
        result["events_measured"] = d1.events
        workers_cpu = sum(v for k, v in d1.cpu.items() if k.startswith("worker") and v is not None)
        result["cpu_us_per_event"] = per_event_us(workers_cpu, d1.events)
        result["broker_cpu_us_per_event"] = per_event_us(d1.cpu.get("broker"), d1.events)
        result["redis_cpu_us_per_event"] = per_event_us(d1.cpu.get("redis"), d1.events)
        result["hops_per_event"] = hops(d1)
        result["records_per_produce_batch"] = batching(base, d1, bench.pids.get("broker"))
        mem = await memory(d1)
        result["memory"] = mem
        result["bytes_per_profile"] = mem.get("bytes_per_profile")
        result["bytes_per_demand_key"] = mem.get("bytes_per_demand_key")
        assert d1.settings is not None
        result["redis"] = await redis_keys(d1.settings, d1.events)
        if "profiles" not in d1.stages:
            bench.notes.append("profiles stage not present in this worker: no profile memory figure; latency observed on profile-events")
        if "demand" not in d1.stages:
            bench.notes.append("demand stage not present in this worker")

        result["peers"] = peers = await run_peers(bench, d1, len(records))
        result["fraction_of_floor"] = ratio(result["events_per_s"], peers["decode_floor"].get("events_per_s"))
        result["ratio_vs_reference"] = ratio(result["events_per_s"], peers["reference"].get("events_per_s"))
        result["ratio_vs_quixstreams"] = ratio(result["events_per_s"], peers["quixstreams"].get("events_per_s"))

        if opts.two_workers:
            d2 = await bench.drain(records, 2, "w2")
            result["events_per_s_2_workers"] = d2.events_per_s
            w2cpu = [v for k, v in d2.cpu.items() if k.startswith("worker") and v is not None]
            result["cpu_us_per_event_2_workers"] = per_event_us(sum(w2cpu), d2.events) if w2cpu else None
            result["scaling_2_workers"] = ratio(d2.events_per_s, d1.events_per_s)
            result["drain_complete_2_workers"] = d2.complete
            result["partitions"] = d2.settings.partitions if d2.settings else None
        else:
            result["events_per_s_2_workers"] = None

        lat = await measure_latency(bench)
        result["latency"] = lat
        result["p50_latency_ms"] = lat.get("p50_ms")
        result["p99_latency_ms"] = lat.get("p99_ms")

        if opts.profile:
            result["profile"] = await bench.profile(records)
    finally:
        await bench.cleanup()
    result["targets"] = evaluate_targets(result)
    return result
