"""The machine and the stack a bench run measures: cores and CPU, the broker's and Redis's pids."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.settings import Settings

__all__ = ["machine_info", "stack_pids", "ensure_stack"]


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def stack_pids(settings: Settings) -> dict[str, int | None]:
    """Pids of the embedded broker and Redis when the settings point at them (else None)."""
    from touchpoint_tools.devstack.stack import StackConfig, status

    cfg = StackConfig.from_settings(settings)
    st = status(cfg)
    ours_kafka = settings.kafka_bootstrap.strip() == cfg.bootstrap_servers
    ours_redis = settings.redis_url.startswith(cfg.redis_url.rsplit("/", 1)[0])
    return {"broker": st.kafka.pid if ours_kafka else None, "redis": st.redis.pid if ours_redis else None}


def ensure_stack(settings: Settings, log: Callable[[str], None]) -> None:
    """Start the embedded stack when the settings point at it and it is not answering."""
    from touchpoint_tools.devstack.stack import StackConfig, status, up

    cfg = StackConfig.from_settings(settings)
    if settings.kafka_bootstrap.strip() != cfg.bootstrap_servers:
        return
    if not status(cfg).ready:
        log("starting the embedded stack (touchpoint stack up)")
        up(cfg, timeout_s=180)
