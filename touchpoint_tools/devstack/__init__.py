"""Embedded local stack for development and tests: a real Kafka 4.x broker (jars from
Maven Central, single KRaft node) and a real redis-server, both on 127.0.0.1.

No faust import here: this is plain process management usable from tests, scripts and CI.
"""

from .stack import (
    SERVICES,
    ServiceStatus,
    StackConfig,
    StackError,
    StackStatus,
    down,
    kill,
    start,
    status,
    up,
    wipe,
)

__all__ = [
    "SERVICES",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
    "down",
    "kill",
    "start",
    "status",
    "up",
    "wipe",
]
