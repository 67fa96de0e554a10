"""The embedded stack end to end: real Kafka 4.x + real redis-server in a temp home.

Uses its own home and free ports (not the session-wide ``stack`` fixture), because it
stops, kills and restarts the services.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from touchpoint_tools.devstack import StackConfig, down, kill, start, status, up

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[StackConfig]:
    missing = [exe for exe in ("java", "mvn", "redis-server") if shutil.which(exe) is None]
    if missing:
        msg = f"missing {', '.join(missing)}; run scripts/install-system-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    kafka_port, controller_port, redis_port = _free_ports(3)
    c = StackConfig(
        home=tmp_path / "stack", kafka_port=kafka_port, controller_port=controller_port, redis_port=redis_port
    )
    try:
        yield c
    finally:
        down(c, timeout_s=20)


def _redis(port: int, *args: str) -> bytes:
    """One RESP command over a raw socket (keeps this test independent of redis-py)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return s.recv(4096)


async def _kafka_round_trip(bootstrap: str, topic: str, n: int, create: bool) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    if create:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(topic, num_partitions=2, replication_factor=1),
                    NewTopic(f"{topic}-compacted", 1, 1, topic_configs={"cleanup.policy": "compact"}),
                ]
            )
            assert {topic, f"{topic}-compacted"} <= set(await admin.list_topics())
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(n):
                await producer.send(topic, key=str(i % 3).encode(), value=f"m{i}".encode())
            await producer.send_and_wait(f"{topic}-compacted", key=b"k", value=b"v")
        finally:
            await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-g{int(create)}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                got.extend(m.value for m in msgs if m.value is not None)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_up_round_trip_crash_restart_down(cfg: StackConfig) -> None:
    t0 = time.monotonic()
    st = up(cfg, timeout_s=90)
    print(f"\nup (incl. format) {time.monotonic() - t0:.1f}s")
    assert st.ready
    assert set(st.started) == {"kafka", "redis"}
    assert st.kafka.address == f"127.0.0.1:{cfg.kafka_port}" and st.kafka.version == cfg.kafka_version
    assert st.kafka.pid and st.redis.pid
    assert (cfg.data_dir("kafka") / "meta.properties").is_file()

    s = status(cfg)
    assert s.ready and s.kafka.pid == st.kafka.pid and s.redis.pid == st.redis.pid
    assert s.kafka.log_file.is_file()

    got = asyncio.run(_kafka_round_trip(cfg.bootstrap_servers, "devstack-it", 30, create=True))
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(30))
    assert _redis(cfg.redis_port, "SET", "devstack:k", "v1") == b"+OK\r\n"

    # Second up is a no-op: same processes, nothing started.
    again = up(cfg, timeout_s=30)
    assert again.started == () and again.kafka.pid == st.kafka.pid and again.redis.pid == st.redis.pid

    # Crash both hard and restart on the same data dirs: data must survive.
    assert kill(cfg, "kafka") == st.kafka.pid
    assert kill(cfg, "redis") == st.redis.pid
    assert status(cfg).stopped
    t1 = time.monotonic()
    assert start(cfg, "redis", timeout_s=30).answering
    k = start(cfg, "kafka", timeout_s=60)
    print(f"restart after SIGKILL {time.monotonic() - t1:.1f}s")
    assert k.answering and k.pid != st.kafka.pid
    assert _redis(cfg.redis_port, "GET", "devstack:k") == b"$2\r\nv1\r\n"  # AOF replayed
    got = asyncio.run(_kafka_round_trip(cfg.bootstrap_servers, "devstack-it", 30, create=False))
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(30))

    down(cfg, timeout_s=20)
    after = status(cfg)
    assert after.stopped and not after.ready
    assert after.kafka.pid is None and after.redis.pid is None
    assert not cfg.pid_file("kafka").exists() and not cfg.pid_file("redis").exists()
    down(cfg)  # idempotent
