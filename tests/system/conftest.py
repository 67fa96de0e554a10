"""A private Kafka + Redis for the system tests.

Crash and back-pressure tests kill and restart the broker and Redis, so they must not touch the
session ``stack`` other tests share. One extra stack serves the whole ``tests/system`` package: a
PLAINTEXT listener (probes, most tests) plus a SASL_PLAINTEXT SCRAM-SHA-512 listener with users
seeded at format time (the security test).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.fixtures.stack import free_port

SCRAM_USER = "tp-worker"
SCRAM_PASSWORD = "scram-" + uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class SystemStack:
    cfg: object  # StackConfig
    sasl_port: int

    def settings(self, tmp_path: Path, **overrides: object) -> Settings:
        base = dict(
            namespace=f"s{uuid.uuid4().hex[:10]}",
            kafka_bootstrap=f"127.0.0.1:{self.cfg.kafka_port}",
            redis_url=f"redis://127.0.0.1:{self.cfg.redis_port}/0",
            partitions=4,
            web_port=free_port(),
            data_dir=str(tmp_path / "worker"),
            pii_key="system-test-key",
            session_timeout_s=6.0,
            commit_interval_s=1.0,
        )
        base.update(overrides)
        return Settings.from_env({}, **base)


@pytest.fixture(scope="package")
def system_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemStack]:
    from touchpoint_tools.devstack import kafka as dkafka
    from touchpoint_tools.devstack.stack import HOST, StackConfig, down, up

    kafka_port, controller_port, sasl_port = free_port(), free_port(), free_port()
    cfg = StackConfig(home=tmp_path_factory.mktemp("system-stack"), kafka_port=kafka_port, controller_port=controller_port,
                      redis_port=free_port(), kafka_heap_mb=512,
                      kafka_overrides=dkafka.sasl_listener_overrides(HOST, kafka_port, controller_port, sasl_port),
                      kafka_scram_users={SCRAM_USER: SCRAM_PASSWORD})
    started = time.monotonic()
    up(cfg, timeout_s=180)
    print(f"\n[system-stack] Kafka on {kafka_port} (SASL {sasl_port}), Redis on {cfg.redis_port}, up in {time.monotonic() - started:.1f}s")
    try:
        yield SystemStack(cfg, sasl_port)
    finally:
        down(cfg)


@pytest.fixture
def sys_settings(system_stack: SystemStack, tmp_path: Path) -> Settings:
    return system_stack.settings(tmp_path)


def ensure_up(stack: SystemStack) -> None:
    """Bring back whatever a test killed (bounded), so the next test starts from a whole stack."""
    from touchpoint_tools.devstack.stack import up

    up(stack.cfg, timeout_s=120)
