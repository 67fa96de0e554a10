"""Crash tests on a private stack: kill -9 workers mid-stream, rebalance, bounce the broker
(SIGTERM and SIGKILL, same data dirs), bounce Redis (AOF), lose Redis entirely and rebuild the
identity graph from Kafka. After each: no event lost, none double-counted, stitching exact
(tests/system/verifier.py). Every loop is bounded by a fixed count and a deadline.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import signal
import time

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from streams.identity.erasure import erase_person
from streams.identity.model import ResolveRequest
from streams.identity.rebuild import build_image, write_image
from streams.identity.redis_graph import RedisIdentityGraph
from streams.identity.rules import IdentityRules
from tests.fixtures.stack import free_port, run_cli
from tests.system.conftest import ensure_up
from tests.system.verifier import PacedPublisher, graph_snapshot, make_traffic, publish_records, verify, wait_idle
from touchpoint_tools.devstack import stack as devstack

pytestmark = [pytest.mark.system, pytest.mark.integration]
NOW = time.time_ns() // 1_000_000


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+]+)"
    return sum(float(m) for m in re.findall(pattern, text))


# -- the rebuild, exactly, on adversarial traffic (conflicts, limits, supernodes, erasures) ----


def test_rebuild_image_equals_live_graph(system_stack):
    """Resolve random conflict-heavy batches and erasures in Redis, keep what went to Kafka
    (audit records, event claims), rebuild into another namespace: the two graphs are equal."""
    rng = random.Random(8)
    url = f"redis://127.0.0.1:{system_stack.cfg.redis_port}/0"
    ns_live, ns_rebuilt = f"rl{rng.randrange(10**8)}", f"rr{rng.randrange(10**8)}"
    rules = IdentityRules()

    async def scenario() -> None:
        redis = AsyncRedis.from_url(url)
        graph = RedisIdentityGraph(redis, ns_live, rules)
        changes: list[tuple[dict, int]] = []
        events: list[tuple[dict, int]] = []
        pool = {"user_id": [f"u{i}" for i in range(25)], "email": [f"e{i}" for i in range(20)], "device_id": [f"d{i}" for i in range(8)],
                "anonymous_id": [f"a{i}" for i in range(60)], "order_id": [f"o{i}" for i in range(10)], "member_id": ["m1", "m2"],
                "phone": ["null", "0", "p1", "p2"]}
        n = 0
        for batch in range(40):
            reqs = []
            for _ in range(rng.randint(1, 25)):
                n += 1
                kinds = rng.sample(sorted(pool), rng.randint(1, 3))
                ids = tuple((k, rng.choice(pool[k])) for k in kinds)
                reqs.append(ResolveRequest(f"m{n}", f"t/0/{n}", ids, 1_000 + n))
            if rng.random() < 0.2 and reqs:  # a redelivered record (same claim) and a client duplicate
                reqs.append(reqs[0])
                reqs.append(ResolveRequest(reqs[0].message_id, f"t/1/{n}", reqs[0].identifiers, reqs[0].ts_ms))
            for req, res in zip(reqs, await graph.resolve_batch(reqs), strict=True):
                changes.extend((dict(c), NOW) for c in res.changes)
                if res.outcome == "applied" and res.profile_id:
                    events.append(({"message_id": req.message_id, "source": req.claim, "profile_id": res.profile_id}, NOW))
            if batch % 9 == 8:
                async def send_change(key: bytes, value: bytes) -> None:
                    changes.append((orjson.loads(value), NOW))

                async def send_control(key: bytes, value: bytes) -> None:
                    return None
                kind = rng.choice(["user_id", "email", "anonymous_id"])
                await erase_person(graph, (kind, rng.choice(pool[kind])), send_change, send_control, 5_000 + n)
        # A shared device bridging many people trips the supernode breaker (quarantine).
        lone = [ResolveRequest(f"q{i}", f"t/2/{i}", (("anonymous_id", f"q{i}"),), 9_000 + i) for i in range(10)]
        pairs = [ResolveRequest(f"qq{i}", f"t/3/{i}", (("device_id", "dq"), ("anonymous_id", f"q{i}")), 9_100 + i) for i in range(10)]
        for req, res in zip(lone + pairs, await graph.resolve_batch(lone + pairs), strict=True):
            changes.extend((dict(c), NOW) for c in res.changes)
            if res.outcome == "applied" and res.profile_id:
                events.append(({"message_id": req.message_id, "source": req.claim, "profile_id": res.profile_id}, NOW))
        rng.shuffle(changes)  # the topic is partitioned: no global order
        now = time.time_ns() // 1_000_000
        img = build_image(changes, events, rules, 7 * 86400, now_ms=now)
        await write_image(redis, ns_rebuilt, img)
        await redis.aclose()
        kinds = {c["type"] for c, _ in changes}
        assert {"created", "linked", "merged", "conflict", "erased"} <= kinds, kinds

    asyncio.run(scenario())
    live = graph_snapshot(url, ns_live)
    rebuilt = graph_snapshot(url, ns_rebuilt)
    # dedup keys of erased/blocked events are not in the log (documented); everything else is exact
    lost = {k for k in set(live) - set(rebuilt) if k.startswith("dedup:")}
    live = {k: v for k, v in live.items() if k not in lost}
    # the window tier likewise: every applied event's id, with its claim (erased/blocked ones not)
    window_live, window_rebuilt = live.pop("dw:"), rebuilt.pop("dw:")
    assert window_rebuilt.items() <= window_live.items()
    assert len(window_live) - len(window_rebuilt) == len(lost)
    assert set(live) == set(rebuilt), (sorted(set(live) - set(rebuilt))[:10], sorted(set(rebuilt) - set(live))[:10])
    diff = [k for k in live if live[k] != rebuilt[k]]
    assert not diff, [(k, live[k], rebuilt[k]) for k in diff[:5]]
    assert any(k.startswith("quar:") for k in live) and any(k.startswith("supp:") for k in live)
    assert any(k.startswith("lnk:") for k in live)  # link breaker state is rebuilt too
    print(f"\n[rebuild] {len(live)} keys equal ({sum(k.startswith('p:') for k in live)} profiles); {len(lost)} dedup keys of erased/blocked events not rebuilt")


# -- workers ---------------------------------------------------------------------------------




@pytest.mark.parametrize("warm", [False, True],
                         ids=["cold-partitions", "warm-partitions"])
def test_kill9_workers_mid_stream(system_stack, sys_settings, start_worker, warm):
    """Two workers; 3 times a worker is SIGKILLed mid-stream and a replacement started.

    ``warm``: the group has committed an offset on every input partition before the traffic
    (one record per partition processed first); ``cold``: the traffic starts on fresh partitions.
    """
    started = time.monotonic()
    traffic = make_traffic(seed=11, n_people=150, n_events=3000)
    workers = [start_worker(sys_settings), start_worker(sys_settings.with_(web_port=free_port()))]
    if warm:
        warmup = make_traffic(seed=19, n_people=8, n_events=40, dup_rate=0, bad_rate=0)
        publish_records(sys_settings, warmup.records)
        wait_idle(sys_settings, *workers)
        traffic.extend(warmup)
    pub = PacedPublisher(sys_settings, traffic.records, rate=220)
    pub.start()
    kills = 0
    for at_s in (3.0, 7.0, 11.0):  # fixed schedule, bounded
        while time.monotonic() - started < at_s + 20 and pub.sent < len(traffic.records) * at_s / 14:
            time.sleep(0.1)
        victim = workers.pop(0)
        victim.stop(signal.SIGKILL)
        kills += 1
        workers.append(start_worker(sys_settings.with_(web_port=free_port()), ready=False))
    pub.finish()
    for w in workers:
        w.wait_ready(120)
    wait_idle(sys_settings, *workers)
    report = verify(sys_settings, traffic)
    assert all(w.proc.poll() is None for w in workers)
    print(f"\n[kill -9 x{kills}] {report.line()}; total {time.monotonic() - started:.0f}s")


def test_rebalance_add_and_remove_workers(system_stack, sys_settings, start_worker):
    """One worker; a second joins mid-stream, the first leaves (SIGTERM), a third joins."""
    started = time.monotonic()
    traffic = make_traffic(seed=12, n_people=120, n_events=2500)
    w1 = start_worker(sys_settings)
    pub = PacedPublisher(sys_settings, traffic.records, rate=220)
    pub.start()
    time.sleep(3)
    w2 = start_worker(sys_settings.with_(web_port=free_port()), ready=False)
    time.sleep(4)
    w1.stop(signal.SIGTERM)
    w3 = start_worker(sys_settings.with_(web_port=free_port()), ready=False)
    pub.finish()
    for w in (w2, w3):
        w.wait_ready(120)
    wait_idle(sys_settings, w2, w3)
    report = verify(sys_settings, traffic)
    print(f"\n[rebalance +1 -1 +1] {report.line()}; total {time.monotonic() - started:.0f}s")


# -- the broker ------------------------------------------------------------------------------


def test_broker_restart_sigterm_and_sigkill(system_stack, sys_settings, start_worker):
    """The broker is stopped with SIGTERM, then SIGKILL, while a worker is mid-stream, and
    restarted on the same data dirs each time; the worker survives and catches up."""
    started = time.monotonic()
    cfg = system_stack.cfg
    traffic = make_traffic(seed=13, n_people=120, n_events=2400)
    worker = start_worker(sys_settings)
    chunks = traffic.chunks(3)
    outages = []
    try:
        for chunk, sig in zip(chunks, (signal.SIGTERM, signal.SIGKILL, None), strict=True):
            publish_records(sys_settings, chunk)
            if sig is None:
                break
            time.sleep(0.7)  # the worker is still working through the chunk
            t0 = time.monotonic()
            devstack.kill(cfg, "kafka", sig)
            time.sleep(3)
            devstack.start(cfg, "kafka", timeout_s=120)
            outages.append(round(time.monotonic() - t0, 1))
    finally:
        ensure_up(system_stack)
    wait_idle(sys_settings, worker, timeout_s=180)
    report = verify(sys_settings, traffic)
    assert worker.proc.poll() is None, worker.log_tail()
    print(f"\n[broker SIGTERM+SIGKILL, outages {outages}s] {report.line()}; total {time.monotonic() - started:.0f}s")


# -- Redis -----------------------------------------------------------------------------------


def test_redis_restart_aof(system_stack, sys_settings, start_worker):
    """Redis is stopped (SIGTERM, then SIGKILL) mid-stream and restarted from its AOF."""
    started = time.monotonic()
    cfg = system_stack.cfg
    traffic = make_traffic(seed=14, n_people=120, n_events=2400)
    worker = start_worker(sys_settings)
    try:
        # Each outage starts while a chunk is in flight and the next chunk arrives during it, so
        # the worker meets Redis down however fast it drains (a fast drain once finished a chunk
        # before the kill and never saw the outage).
        chunks = traffic.chunks(4)
        publish_records(sys_settings, chunks[0])
        for chunk, sig in zip(chunks[1:3], (signal.SIGTERM, signal.SIGKILL), strict=True):
            time.sleep(0.2)
            devstack.kill(cfg, "redis", sig)
            publish_records(sys_settings, chunk)
            time.sleep(3)
            devstack.start(cfg, "redis", timeout_s=60)
        publish_records(sys_settings, chunks[3])
    finally:
        ensure_up(system_stack)
    wait_idle(sys_settings, worker)
    report = verify(sys_settings, traffic)
    metrics = worker.get("/metrics")[1].decode()
    retries = metric(metrics, "touchpoint_dependency_retries_total", dependency="redis")
    assert worker.proc.poll() is None
    assert retries > 0, "the outage should have been waited out with retries"
    assert "redis unavailable" in worker.log_tail(400)
    print(f"\n[redis SIGTERM+SIGKILL, {retries:.0f} retries] {report.line()}; total {time.monotonic() - started:.0f}s")


def test_redis_lost_rebuild_and_carry_on(system_stack, sys_settings, start_worker):
    """Redis loses everything (data dir wiped); `touchpoint identity rebuild` restores the exact
    graph from Kafka; new traffic (new people, people seen before, re-sent old messages) then
    gives exactly the oracle's profiles."""
    started = time.monotonic()
    cfg = system_stack.cfg
    first = make_traffic(seed=15, n_people=100, n_events=1500)
    worker = start_worker(sys_settings)
    publish_records(sys_settings, first.records)
    wait_idle(sys_settings, worker)
    before = graph_snapshot(sys_settings.redis_url, sys_settings.namespace)
    worker.stop(signal.SIGTERM)

    try:
        devstack.kill(cfg, "redis", signal.SIGKILL)
        shutil.rmtree(cfg.data_dir("redis"))
        devstack.start(cfg, "redis", timeout_s=60)
    finally:
        ensure_up(system_stack)
    assert Redis.from_url(sys_settings.redis_url).dbsize() == 0
    t0 = time.monotonic()
    result = run_cli(sys_settings, "identity", "rebuild", timeout_s=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    stats = orjson.loads(result.stdout.splitlines()[-1])
    rebuild_s = time.monotonic() - t0
    after = graph_snapshot(sys_settings.redis_url, sys_settings.namespace)
    assert set(after) == set(before), (sorted(set(before) - set(after))[:10], sorted(set(after) - set(before))[:10])
    assert {k: (before[k], v) for k, v in after.items() if v != before[k]} == {}
    again = run_cli(sys_settings, "identity", "rebuild")
    assert again.returncode == 1 and b"--force" in again.stderr  # refuses to overwrite a live graph

    # Carry on: old people come back, new people arrive, some old messages are re-sent.
    second = make_traffic(seed=15, n_people=100, n_events=1200, tag="b", start_ms=1_767_300_000_000,
                          population=first.people + make_traffic(seed=16, n_people=40, n_events=0).people)
    resent = first.records[:300]
    worker2 = start_worker(sys_settings.with_(web_port=free_port()))
    publish_records(sys_settings, second.records + resent)
    wait_idle(sys_settings, worker2)
    first.extend(second)
    first.bad.extend(b for b in make_bad_of(resent, first))
    report = verify(sys_settings, first)
    print(f"\n[redis lost -> rebuild in {rebuild_s:.1f}s: {stats}] {report.line()}; total {time.monotonic() - started:.0f}s")


def make_bad_of(resent: list[bytes], traffic) -> list[tuple[bytes, str]]:
    """Poison records among the re-sent ones are dead-lettered again (new offsets = new claims)."""
    bad = dict(traffic.bad)
    return [(r, bad[r]) for r in resent if r in bad]
