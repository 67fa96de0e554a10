"""Where the local stack lives and what it runs: ``StackConfig`` and the status it reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.settings import Settings

from . import kafka as _kafka

SERVICES: tuple[str, ...] = ("kafka", "redis")
HOST = "127.0.0.1"


class StackError(RuntimeError):
    """The stack could not be brought to (or out of) the requested state."""


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "touchpoint" / "stack"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "touchpoint"


@dataclass(frozen=True)
class StackConfig:
    home: Path = field(default_factory=_default_home)
    cache_dir: Path = field(default_factory=_default_cache_dir)
    kafka_port: int = 19092
    controller_port: int = 19093
    redis_port: int = 16379
    kafka_version: str = _kafka.DEFAULT_KAFKA_VERSION
    kafka_heap_mb: int = 768
    # C1-only JIT; measured to start the broker faster on 2 cores (see module README/report).
    kafka_fast_jit: bool = True
    # Extra/overriding broker properties, appended to the rendered server.properties.
    kafka_overrides: Mapping[str, str] = field(default_factory=dict)
    # Bound for the one-time Maven download (not counted in up()'s readiness timeout).
    fetch_timeout_s: float = 900.0
    # SCRAM users (name -> password) seeded when the data dir is formatted (first start only);
    # used with kafka.sasl_listener_overrides(...) in kafka_overrides for a SASL_PLAINTEXT listener.
    kafka_scram_users: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Absolute paths: they end up in command lines that identify our processes.
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().resolve())
        object.__setattr__(self, "kafka_overrides", MappingProxyType(dict(self.kafka_overrides)))
        object.__setattr__(self, "kafka_scram_users", MappingProxyType(dict(self.kafka_scram_users)))
        ports = (self.kafka_port, self.controller_port, self.redis_port)
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ValueError(f"ports must be distinct and valid, got {ports}")
        if not self.kafka_version.split(".")[0].isdigit() or int(self.kafka_version.split(".")[0]) < 4:
            # 3.x needs reload4j + log4j.properties instead of log4j2; not wired up here.
            raise ValueError(f"kafka_version must be 4.x or later, got {self.kafka_version!r}")
        if self.kafka_heap_mb < 128:
            raise ValueError("kafka_heap_mb must be >= 128")

    @classmethod
    def from_settings(cls, settings: Settings) -> StackConfig:
        """The stack that ``settings`` describe (TOUCHPOINT_STACK_* variables)."""
        return cls(home=Path(settings.stack_dir), cache_dir=Path(settings.cache_dir), kafka_port=settings.stack_kafka_port,
                   controller_port=settings.stack_controller_port, redis_port=settings.stack_redis_port)

    # -- derived paths
    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.redis_port}/0"

    @property
    def lock_file(self) -> Path:
        return self.home / "stack.lock"

    def service_dir(self, service: str) -> Path:
        check_service(service)
        return self.home / service

    def data_dir(self, service: str) -> Path:
        return self.service_dir(service) / "data"

    def pid_file(self, service: str) -> Path:
        return self.service_dir(service) / f"{service}.pid"

    def config_file(self, service: str) -> Path:
        return self.service_dir(service) / ("server.properties" if service == "kafka" else "redis.conf")

    def log_file(self, service: str) -> Path:
        if service == "kafka":
            return self.service_dir("kafka") / "logs" / "server.log"
        return self.service_dir("redis") / "redis.log"

    def out_file(self, service: str) -> Path:
        """Where the process's stdout/stderr go."""
        if service == "kafka":
            return self.service_dir("kafka") / "logs" / "kafka.out"
        return self.log_file("redis")

    def port(self, service: str) -> int:
        check_service(service)
        return self.kafka_port if service == "kafka" else self.redis_port


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    host: str
    port: int
    running: bool  # our process is alive
    answering: bool  # protocol-level probe succeeded (metadata / PING)
    data_dir: Path
    log_file: Path
    version: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class StackStatus:
    home: Path
    kafka: ServiceStatus
    redis: ServiceStatus
    started: tuple[str, ...] = ()  # services this call started (up/start only)

    @property
    def ready(self) -> bool:
        return self.kafka.answering and self.redis.answering

    @property
    def stopped(self) -> bool:
        return not self.kafka.running and not self.redis.running

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.address

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis.address}/0"

    def service(self, name: str) -> ServiceStatus:
        check_service(name)
        return self.kafka if name == "kafka" else self.redis

    def as_dict(self) -> dict[str, object]:
        def svc(s: ServiceStatus) -> dict[str, object]:
            return {
                "pid": s.pid,
                "address": s.address,
                "running": s.running,
                "answering": s.answering,
                "data_dir": str(s.data_dir),
                "log_file": str(s.log_file),
                "version": s.version,
            }

        return {"home": str(self.home), "ready": self.ready, "kafka": svc(self.kafka), "redis": svc(self.redis)}


def check_service(service: str) -> None:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")

