"""Start, stop and inspect the local Kafka + Redis stack.

Layout under ``StackConfig.home``::

    stack.lock                      flock held by up/down/start/kill
    kafka/server.properties         rendered on every start
    kafka/log4j2.yaml               copied from the package on every start
    kafka/data/                     log.dirs (formatted once)
    kafka/logs/server.log           broker log (log4j2)
    kafka/logs/kafka.out            JVM stdout/stderr + StorageTool output
    kafka/kafka.pid
    redis/redis.conf, redis/data/, redis/redis.log, redis/redis.pid

Processes are started detached (own session) so they outlive the Python process that
started them; they are found again through pid files, and a pid is only trusted when
/proc/<pid>/cmdline names this home's config file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.settings import Settings

from . import kafka as _kafka
from . import redis as _redis

SERVICES: tuple[str, ...] = ("kafka", "redis")
HOST = "127.0.0.1"
_LOG_TAIL_LINES = 30

# Popen objects of children started by this process, so we can reap them (otherwise a
# dead child stays a zombie and still "exists" in /proc).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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
        _check_service(service)
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
        _check_service(service)
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
        _check_service(name)
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


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _locked(cfg: StackConfig, timeout_s: float) -> Iterator[None]:
    """Exclusive flock on home/stack.lock so two concurrent up() calls don't race."""
    cfg.home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(cfg.lock_file, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StackError(f"another devstack operation holds {cfg.lock_file} (waited {timeout_s:.0f}s)") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _proc_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie still has /proc/<pid>)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # waitpid is exact: it succeeds only once every thread has exited, whereas a
        # JVM's leader thread shows as zombie while the others are still tearing down.
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def cmdline_matches(cmdline: bytes, marker: str) -> bool:
    """True if one argv element equals ``marker`` (our config path)."""
    return marker.encode() in cmdline.split(b"\0")


def _is_ours(pid: int, marker: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline_matches(cmdline, str(marker))


def _our_pid(cfg: StackConfig, service: str) -> int | None:
    """The live pid of our process for ``service``, cleaning up a stale pid file."""
    pf = cfg.pid_file(service)
    pid = _read_pid(pf)
    if pid is None:
        return None
    if _proc_alive(pid) and _is_ours(pid, cfg.config_file(service)):
        return pid
    # Stale: the process died (or the pid was reused by something else). Never signal it.
    with contextlib.suppress(OSError):
        pf.unlink()
    return None


def _probe(cfg: StackConfig, service: str) -> bool:
    if service == "kafka":
        return _kafka.probe(HOST, cfg.kafka_port)
    return _redis.probe(HOST, cfg.redis_port)


def _version(cfg: StackConfig, service: str) -> str:
    if service == "kafka":
        return cfg.kafka_version
    try:
        return _redis.server_version(_redis.find_redis_server())
    except FileNotFoundError:
        return "not installed"


def _service_status(cfg: StackConfig, service: str, probe: bool = True) -> ServiceStatus:
    pid = _our_pid(cfg, service)
    answering = pid is not None and probe and _probe(cfg, service)
    return ServiceStatus(
        name=service,
        pid=pid,
        host=HOST,
        port=cfg.port(service),
        running=pid is not None,
        answering=answering,
        data_dir=cfg.data_dir(service),
        log_file=cfg.log_file(service),
        version=_version(cfg, service),
    )


def _log_context(cfg: StackConfig, service: str) -> str:
    parts = []
    for path in dict.fromkeys([cfg.out_file(service), cfg.log_file(service)]):
        text = tail(path)
        if text.strip():
            parts.append(f"--- last {_LOG_TAIL_LINES} lines of {path} ---\n{text}")
    return "\n".join(parts) or f"(no log output in {cfg.service_dir(service)})"


def _port_in_use(port: int) -> bool:
    return _kafka.port_open(HOST, port, timeout_s=0.3)


def _wait_ports_free(ports: tuple[int, ...], timeout_s: float) -> bool:
    """Sockets of a just-killed process can outlive its pid by a moment; wait (bounded)."""
    deadline = time.monotonic() + timeout_s
    while any(_port_in_use(p) for p in ports):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _ports(cfg: StackConfig, service: str) -> tuple[int, ...]:
    return (cfg.kafka_port, cfg.controller_port) if service == "kafka" else (cfg.redis_port,)


# --------------------------------------------------------------------------- starting


def _prepare_kafka(cfg: StackConfig) -> list[str]:
    try:
        lib = _kafka.ensure_kafka_libs(cfg.cache_dir, cfg.kafka_version, cfg.fetch_timeout_s)
    except _kafka.FetchError as exc:
        raise StackError(str(exc)) from exc
    try:
        java = _kafka.find_java()
    except FileNotFoundError as exc:
        raise StackError(str(exc)) from exc
    sdir = cfg.service_dir("kafka")
    data = cfg.data_dir("kafka")
    logs = cfg.log_file("kafka").parent
    for d in (data, logs):
        d.mkdir(parents=True, exist_ok=True)
    props = cfg.config_file("kafka")
    props.write_text(
        _kafka.render_server_properties(
            host=HOST,
            kafka_port=cfg.kafka_port,
            controller_port=cfg.controller_port,
            log_dir=data,
            overrides=cfg.kafka_overrides,
        ),
        encoding="utf-8",
    )
    log4j = sdir / "log4j2.yaml"
    log4j.write_text(_kafka.resource_text("log4j2.yaml"), encoding="utf-8")

    # The standalone format records the controller endpoint in the metadata log, so a
    # formatted data dir is tied to its controller port.
    marker = sdir / "format.json"
    if not _kafka.is_formatted(data):
        cluster_id = _kafka.new_cluster_id()
        try:
            _kafka.format_storage(java, lib, cluster_id, props, cfg.out_file("kafka"), scram_users=cfg.kafka_scram_users)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"formatting {data} failed: {exc}\n{_log_context(cfg, 'kafka')}") from exc
        marker.write_text(
            json.dumps(
                {"cluster_id": cluster_id, "controller_port": cfg.controller_port, "kafka_version": cfg.kafka_version}
            )
        )
    else:
        try:
            fmt = json.loads(marker.read_text())
        except (OSError, ValueError):
            fmt = {}
        if fmt.get("controller_port") not in (None, cfg.controller_port):
            raise StackError(
                f"{data} was formatted for controller port {fmt['controller_port']}, config asks for "
                f"{cfg.controller_port}; use the old port or wipe() the stack"
            )
    return _kafka.broker_command(
        java=java,
        lib=lib,
        server_properties=props,
        log4j_config=log4j,
        logs_dir=logs,
        heap_mb=cfg.kafka_heap_mb,
        fast_jit=cfg.kafka_fast_jit,
    )


def _prepare_redis(cfg: StackConfig) -> list[str]:
    try:
        exe = _redis.find_redis_server()
    except FileNotFoundError as exc:
        raise StackError(str(exc)) from exc
    data = cfg.data_dir("redis")
    data.mkdir(parents=True, exist_ok=True)
    conf = cfg.config_file("redis")
    conf.write_text(_redis.render_redis_conf(host=HOST, port=cfg.redis_port, data_dir=data), encoding="utf-8")
    return _redis.server_command(exe, conf)


def _spawn(cfg: StackConfig, service: str) -> int:
    """Start one service detached; returns its pid (does not wait for readiness)."""
    if not _wait_ports_free(_ports(cfg, service), timeout_s=5.0):
        raise StackError(
            f"cannot start {service}: port(s) {', '.join(map(str, _ports(cfg, service)))} "
            "already taken by a process this stack did not start"
        )
    cmd = _prepare_kafka(cfg) if service == "kafka" else _prepare_redis(cfg)
    out = cfg.out_file(service)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab") as log:
        log.write(f"\n---- devstack start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cfg.service_dir(service),
            start_new_session=True,  # survive our exit and our terminal's signals
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    _write_pid(cfg.pid_file(service), proc.pid)
    return proc.pid


def _wait_ready(cfg: StackConfig, services: dict[str, int], deadline: float) -> None:
    """Wait until every service in ``services`` (name -> pid) answers; raise on death/timeout."""
    pending = dict(services)
    while pending:
        for service, pid in list(pending.items()):
            if not _proc_alive(pid):
                raise StackError(f"{service} (pid {pid}) exited during start-up\n{_log_context(cfg, service)}")
            if _probe(cfg, service):
                del pending[service]
        if not pending:
            return
        if time.monotonic() >= deadline:
            name = next(iter(pending))
            raise StackError(
                f"{', '.join(pending)} did not answer within the timeout "
                f"({name} on {HOST}:{cfg.port(name)})\n{_log_context(cfg, name)}"
            )
        time.sleep(0.2)


def _terminate(cfg: StackConfig, pids: dict[str, int], timeout_s: float) -> None:
    """SIGTERM, wait up to timeout_s, then SIGKILL; removes the pid files."""
    for service, pid in pids.items():
        if _is_ours(pid, cfg.config_file(service)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_proc_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for service, pid in pids.items():
        if _proc_alive(pid) and _is_ours(pid, cfg.config_file(service)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 10.0
    while time.monotonic() < kill_deadline and any(_proc_alive(p) for p in pids.values()):
        time.sleep(0.05)
    for service, pid in pids.items():
        if _proc_alive(pid):
            raise StackError(f"{service} (pid {pid}) did not exit even after SIGKILL")
        if _read_pid(cfg.pid_file(service)) == pid:
            with contextlib.suppress(OSError):
                cfg.pid_file(service).unlink()


def _start_services(cfg: StackConfig, services: tuple[str, ...], timeout_s: float) -> StackStatus:
    started: dict[str, int] = {}
    try:
        waiting: dict[str, int] = {}
        # Redis first: it is up in milliseconds while the JVM starts.
        for service in sorted(services, key=lambda s: s != "redis"):
            pid = _our_pid(cfg, service)
            if pid is not None:
                if not _probe(cfg, service):
                    waiting[service] = pid  # ours but still starting (or hung): wait, don't restart
                continue
            pid = _spawn(cfg, service)
            started[service] = pid
            waiting[service] = pid
        # The readiness clock starts after the (possibly long, one-time) Maven fetch.
        _wait_ready(cfg, waiting, time.monotonic() + timeout_s)
    except BaseException:
        # Leave nothing half-started behind; only what *this* call started is stopped.
        if started:
            with contextlib.suppress(StackError):
                _terminate(cfg, started, timeout_s=10.0)
        raise
    return StackStatus(
        home=cfg.home,
        kafka=_service_status(cfg, "kafka", probe="kafka" in services),
        redis=_service_status(cfg, "redis", probe="redis" in services),
        started=tuple(started),
    )


# --------------------------------------------------------------------------- public API


def up(cfg: StackConfig, timeout_s: float = 120.0) -> StackStatus:
    """Start whatever is not running; return once Kafka answers metadata and Redis PING.

    Idempotent. On failure raises StackError (with log tails) after stopping what this
    call started. ``timeout_s`` bounds the wait for readiness (and for the lock); the
    one-time jar download is bounded separately by ``cfg.fetch_timeout_s``.
    """
    with _locked(cfg, timeout_s):
        return _start_services(cfg, SERVICES, timeout_s)


def start(cfg: StackConfig, service: str, timeout_s: float = 120.0) -> ServiceStatus:
    """Start one service (e.g. the broker after a SIGKILL, on the same data dir) and wait for it."""
    _check_service(service)
    with _locked(cfg, timeout_s):
        return _start_services(cfg, (service,), timeout_s).service(service)


def down(cfg: StackConfig, timeout_s: float = 30.0) -> None:
    """Stop exactly the processes this stack started (SIGTERM, then SIGKILL). Idempotent."""
    with _locked(cfg, timeout_s):
        pids = {s: p for s in SERVICES if (p := _our_pid(cfg, s)) is not None}
        if pids:
            _terminate(cfg, pids, timeout_s)


def kill(cfg: StackConfig, service: str, sig: int = signal.SIGKILL, wait_s: float = 30.0) -> int | None:
    """Send ``sig`` to our process for ``service``; returns its pid (None if not running).

    For SIGKILL/SIGTERM waits (bounded) until it is gone and drops the pid file, so a
    following start() sees a clean slate with the same data dir.
    """
    _check_service(service)
    with _locked(cfg, wait_s):
        pid = _our_pid(cfg, service)
        if pid is None:
            return None
        os.kill(pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            deadline = time.monotonic() + wait_s
            while _proc_alive(pid):
                if time.monotonic() >= deadline:
                    raise StackError(f"{service} (pid {pid}) still alive {wait_s:.0f}s after signal {sig}")
                time.sleep(0.05)
            with contextlib.suppress(OSError):
                cfg.pid_file(service).unlink()
            _wait_ports_free(_ports(cfg, service), timeout_s=5.0)
        return pid


def status(cfg: StackConfig) -> StackStatus:
    """What runs where; probes each running service once (a few seconds at most)."""
    return StackStatus(home=cfg.home, kafka=_service_status(cfg, "kafka"), redis=_service_status(cfg, "redis"))


def wipe(cfg: StackConfig) -> None:
    """Delete the stack's data, logs and configs (the jar cache is kept). Must be stopped."""
    with _locked(cfg, 30.0):
        running = [s for s in SERVICES if _our_pid(cfg, s) is not None]
        if running:
            raise StackError(f"refusing to wipe {cfg.home}: {', '.join(running)} still running")
        for service in SERVICES:
            shutil.rmtree(cfg.service_dir(service), ignore_errors=True)
