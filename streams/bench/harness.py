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
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.bench import procstat
from streams.bench.report import evaluate_targets
from streams.bench.stats import percentile, rate, ratio
from streams.bench.topics import Kafka, OffsetSamples, delete_namespace, log_batches
from streams.bench.workers import WorkerProc, free_port, wait_all_ready
from streams.bench.workload import make_records, offer, preload
from streams.kafka import topics as T
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

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


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def stack_pids(settings: Settings) -> dict[str, int | None]:
    """Pids of the embedded broker and Redis when the settings point at them (else None)."""
    from streams.devstack.stack import StackConfig, status

    cfg = StackConfig.from_settings(settings)
    st = status(cfg)
    ours_kafka = settings.kafka_bootstrap.strip() == cfg.bootstrap_servers
    ours_redis = settings.redis_url.startswith(cfg.redis_url.rsplit("/", 1)[0])
    return {"broker": st.kafka.pid if ours_kafka else None, "redis": st.redis.pid if ours_redis else None}


def ensure_stack(settings: Settings, log: Callable[[str], None]) -> None:
    """Start the embedded stack when the settings point at it and it is not answering."""
    from streams.devstack.stack import StackConfig, status, up

    cfg = StackConfig.from_settings(settings)
    if settings.kafka_bootstrap.strip() != cfg.bootstrap_servers:
        return
    if not status(cfg).ready:
        log("starting the embedded stack (touchpoint stack up)")
        up(cfg, timeout_s=180)


ROOT = Path(__file__).resolve().parents[2]


def peer_python(module: str, log: Callable[[str], None], timeout_s: float = 900.0) -> str:
    """The interpreter for a peer: this one, unless the peer needs Quix Streams and it is not
    installed here; then ``.venv-bench`` (created on first use from the pinned ``bench`` extra)."""
    import importlib.util

    if module != "quix_app" or importlib.util.find_spec("quixstreams") is not None:
        return sys.executable
    venv = ROOT / ".venv-bench"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import quixstreams, streams.ingest.decode"]
    if python.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
        return str(python)
    lock = ROOT / "requirements.lock"
    if not (ROOT / "pyproject.toml").exists() or not lock.exists():
        raise RuntimeError("quixstreams is not installed: pip install 'touchpoint-streams[bench]'")
    log(f"installing the bench peers (quixstreams, pinned) into {venv} (first use only)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(lock),
                    "-e", f"{ROOT}[bench]"], check=True, timeout=timeout_s, cwd=ROOT)
    return str(python)


def stages_present(topics: list[str], settings: Settings) -> list[str]:
    """The pipeline stages this worker runs, from the topics it declared at start-up."""
    stages = ["ingest", "identity"]
    if f"{settings.app_id}-profiles-changelog" in topics:
        stages.append("profiles")
    if f"{settings.app_id}-demand-changelog" in topics:
        stages.append("demand")
    return stages


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

    # -- memory ----------------------------------------------------------------------------
    async def memory(self, drain: Drain) -> dict[str, Any]:
        s = drain.settings
        assert s is not None
        out: dict[str, Any] = {}
        async with Kafka(s) as k:
            topics = await k.topics(s.app_id + "-")
            prof_topic, demand_topic = f"{s.app_id}-profiles-changelog", f"{s.app_id}-demand-changelog"
            if prof_topic in topics:
                from streams.profiles.profile import is_tomb_bytes

                st = await k.changelog_stats(prof_topic, is_dead=is_tomb_bytes)
                out.update(profiles=st.live_keys, profile_keys=st.keys, bytes_per_profile=st.bytes_per_key,
                           profile_method="newest changelog value per live profile (key + value bytes, orjson)")
            if demand_topic in topics:
                st = await k.changelog_stats(demand_topic)
                out.update(demand_keys=st.live_keys, bytes_per_demand_key=st.bytes_per_key,
                           demand_method="newest changelog value per demand key (key + value bytes, Faust JSON)")
        if drain.rss_before and drain.rss_after:
            grown = drain.rss_after - drain.rss_before
            out["rss_growth_bytes"] = grown
            if out.get("profiles"):
                out["rss_bytes_per_profile"] = grown / out["profiles"]
            entries = (out.get("profiles") or 0) + (out.get("demand_keys") or 0)
            if entries:
                out["rss_bytes_per_table_entry"] = grown / entries
        return out

    # -- peers -----------------------------------------------------------------------------
    async def peer(self, module: str, settings: Settings, group: str, expect: int) -> dict[str, Any]:
        try:
            python = await asyncio.to_thread(peer_python, module, self.log)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            return {"events_per_s": None, "error": f"peer not available: {exc}"[:400]}
        cmd = [python, "-m", f"streams.bench.peers.{module}", "--topic", settings.topic(T.INPUT),
               "--group", group, "--expect", str(expect), "--timeout", str(self.opts.phase_timeout_s),
               "--state-dir", str(self.opts.workdir / f"{group}-state")]
        env = {**os.environ, **settings.to_env()}
        self.log(f"[peer {module}] consuming {expect:,} events")
        log_path = self.opts.workdir / f"peer-{module}.log"
        with open(log_path, "wb") as err:
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.PIPE, stderr=err,
                                                        stdin=subprocess.DEVNULL)
            try:
                stdout, _ = await asyncio.wait_for(proc.communicate(), self.opts.phase_timeout_s + 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return {"events_per_s": None, "error": "timed out"}
        lines = [ln for ln in stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
        if not lines:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            return {"events_per_s": None, "error": f"no result (exit {proc.returncode}): {tail[-600:]}"}
        result = orjson.loads(lines[-1])
        self.log(f"[peer {module}] {result.get('events_per_s') or 0:,.0f} ev/s")
        return result

    # -- latency ---------------------------------------------------------------------------
    async def latency(self) -> dict[str, Any]:
        from streams.profiles.stage import message_digest

        o = self.opts
        count = int(o.latency_rate * o.latency_seconds)
        records = make_records(count, seed=11, rate=o.latency_rate)
        settings = self.fresh("lat")
        self.log(f"[latency] 1 worker, {o.latency_rate:,.0f} ev/s for {o.latency_seconds:.0f}s")
        workers = await self.start_workers(settings, 1, "lat")
        try:
            async with Kafka(settings) as k:
                topics = await k.topics(settings.namespace + ".")
                changelog = f"{settings.app_id}-profiles-changelog"
                mode = "profiles" if changelog in topics else "profile-events"
                observed = changelog if mode == "profiles" else settings.topic(T.PROFILE_EVENTS)
                tps = await k.partitions([observed])
            index: dict[str, int] = {}
            for i, raw in enumerate(records):
                mid = orjson.loads(raw)["messageId"]
                index[message_digest(mid) if mode == "profiles" else mid] = i
            sent_t: list[float] = [0.0] * count
            seen_t: list[float | None] = [None] * count
            from aiokafka import AIOKafkaConsumer

            from streams.kafka.client import client_options
            from streams.profiles.bundle import decoded_items

            consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, group_id=None,
                                        fetch_max_wait_ms=100, max_partition_fetch_bytes=8 * 1024 * 1024)
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            done = asyncio.Event()

            def match(value: bytes, now: float) -> None:
                if mode == "profiles":
                    start = value.find(b'"rc":[')
                    if start < 0:
                        return
                    end = value.find(b"]", start)
                    for part in value[start + 6:end].split(b","):
                        i = index.get(part.strip(b'"').decode())
                        if i is not None and seen_t[i] is None:
                            seen_t[i] = now
                else:
                    for _, item in decoded_items(None, value):  # ingest bundles profile-events
                        if not isinstance(item, dict) or "control" in item:
                            continue
                        i = index.get(item.get("message_id"))
                        if i is not None and seen_t[i] is None:
                            seen_t[i] = now

            async def observe() -> None:
                while not done.is_set():
                    batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                    now = time.perf_counter()
                    for recs in batches.values():
                        for r in recs:
                            if r.value:
                                match(r.value, now)

            observer = asyncio.create_task(observe())
            try:
                cpu0 = {"worker0": procstat.cpu_seconds(workers[0].pid)}
                sent, seconds = await offer(settings, settings.topic(T.INPUT), records, o.latency_rate,
                                            lambda i, t: sent_t.__setitem__(i, t))
                cpu1 = {"worker0": procstat.cpu_seconds(workers[0].pid)}
                deadline = time.monotonic() + o.latency_drain_s
                while time.monotonic() < deadline and None in seen_t:
                    await asyncio.sleep(0.2)
            finally:
                done.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(observer, 5)
                await consumer.stop()
        finally:
            for w in workers:
                w.stop()
        t0, t_end = sent_t[0], time.perf_counter()
        # An event never seen counts with the time it waited until the end (a lower bound), so a
        # pipeline that cannot keep up gets a p99 that says so instead of none at all.
        matched = [(seen - sent) * 1000 for sent, seen in zip(sent_t, seen_t, strict=True)
                   if seen is not None and sent - t0 >= o.latency_warmup_s]
        censored = [(t_end - sent) * 1000 for sent, seen in zip(sent_t, seen_t, strict=True)
                    if seen is None and sent - t0 >= o.latency_warmup_s]
        lat = matched + censored
        worker_cpu = None if cpu0["worker0"] is None or cpu1["worker0"] is None else cpu1["worker0"] - cpu0["worker0"]
        return {
            "observed": "profile updated (profiles changelog, message-id digest)" if mode == "profiles"
                        else "applied record on profile-events (no profiles stage)",
            "offered_per_s": o.latency_rate, "achieved_per_s": rate(sent, seconds), "seconds": seconds,
            "warmup_s": o.latency_warmup_s, "samples": len(matched), "unmatched": len(censored),
            "lower_bound": bool(censored),
            "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
            "p999_ms": percentile(lat, 99.9), "max_ms": max(lat) if lat else None,
            "worker_cpu_s_while_offered": worker_cpu,
        }

    # -- profiling -------------------------------------------------------------------------
    async def profile(self, records: list[bytes]) -> dict[str, Any]:
        from streams.bench import pyspy

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


def hops(drain: Drain) -> dict[str, Any]:
    """Records produced per input event on each output topic, and agent deliveries per input event."""
    s = drain.settings
    assert s is not None
    n = drain.events
    prefix = s.namespace + "."
    produced = {}
    for topic, count in sorted(drain.topic_records.items()):
        if topic == s.topic(T.INPUT):
            continue
        name = topic[len(prefix):] if topic.startswith(prefix) else topic
        name = name.replace("touchpoint-", "") if name.startswith("touchpoint-") else name
        produced[name] = count / n
    consumed = {T.INPUT: 1.0}
    if "profiles" in drain.stages:
        consumed[T.PROFILE_EVENTS] = drain.topic_records.get(s.topic(T.PROFILE_EVENTS), 0) / n
    if "demand" in drain.stages:
        consumed[T.DEMAND_COUNTS] = drain.topic_records.get(s.topic(T.DEMAND_COUNTS), 0) / n
    p_total, c_total = sum(produced.values()), sum(consumed.values())
    return {"produced": produced, "produced_total": p_total, "consumed": consumed, "consumed_total": c_total,
            "total": p_total + c_total}


def batching(base: Settings, drain: Drain, broker_pid: int | None) -> dict[str, float] | None:
    """Records per produce batch on each output topic, from the local broker's log segments."""
    from streams.devstack.stack import StackConfig

    if broker_pid is None or drain.settings is None:
        return None
    data_dir = StackConfig.from_settings(base).data_dir("kafka")
    out = {}
    for topic in drain.topic_records:
        if topic == drain.settings.topic(T.INPUT):
            continue
        batches, records = log_batches(data_dir, topic)
        if batches:
            out[topic[len(drain.settings.namespace) + 1:].removeprefix("touchpoint-")] = records / batches
    return out or None


def per_event_us(seconds: float | None, events: int) -> float | None:
    return seconds / events * 1e6 if seconds is not None and events else None


async def run_bench(base: Settings, opts: BenchOptions, log: Callable[[str], None]) -> dict[str, Any]:
    await asyncio.to_thread(ensure_stack, base, log)
    if opts.profile:  # fail before the runs, not after them
        from streams.bench import pyspy

        try:
            pyspy.executable()
        except FileNotFoundError:
            await asyncio.to_thread(peer_python, "quix_app", log)  # the bench extra (py-spy included)
            pyspy.executable()
    bench = Bench(base, opts, log)
    result: dict[str, Any] = {"events": opts.events, "machine": _machine(), "notes": bench.notes}
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
        memory = await bench.memory(d1)
        result["memory"] = memory
        result["bytes_per_profile"] = memory.get("bytes_per_profile")
        result["bytes_per_demand_key"] = memory.get("bytes_per_demand_key")
        if "profiles" not in d1.stages:
            bench.notes.append("profiles stage not present in this worker: no profile memory figure; latency observed on profile-events")
        if "demand" not in d1.stages:
            bench.notes.append("demand stage not present in this worker")

        peers: dict[str, Any] = {}
        if opts.peers:
            s = d1.settings
            assert s is not None
            peers["aiokafka_ceiling"] = await bench.peer("aiokafka_ceiling", s, f"{s.namespace}.bench-ceiling", len(records))
            peers["quixstreams"] = await bench.peer("quix_app", s, f"{s.namespace}.bench-quix", len(records))
        else:
            peers = {"aiokafka_ceiling": {"events_per_s": None, "skipped": True}, "quixstreams": {"events_per_s": None, "skipped": True}}
        result["peers"] = peers
        result["fraction_of_ceiling"] = ratio(result["events_per_s"], peers["aiokafka_ceiling"].get("events_per_s"))
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

        lat = await bench.latency()
        result["latency"] = lat
        result["p50_latency_ms"] = lat.get("p50_ms")
        result["p99_latency_ms"] = lat.get("p99_ms")

        if opts.profile:
            result["profile"] = await bench.profile(records)
    finally:
        await bench.cleanup()
    result["targets"] = evaluate_targets(result)
    return result
