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
import json
import os
import shutil
import signal
import subprocess
import time

from . import kafka as _kafka
from . import redis as _redis
from .config import HOST, SERVICES, ServiceStatus, StackConfig, StackError, StackStatus, check_service
from .processes import (
    CHILDREN,
    LOG_TAIL_LINES,
    cmdline_matches,
    is_ours,
    locked,
    our_pid,
    proc_alive,
    read_pid,
    tail,
    wait_ports_free,
    write_pid,
)

__all__ = ["HOST", "SERVICES", "ServiceStatus", "StackConfig", "StackError", "StackStatus", "cmdline_matches", "down", "kill", "start", "status", "tail", "up", "wipe"]


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
    pid = our_pid(cfg, service)
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
            parts.append(f"--- last {LOG_TAIL_LINES} lines of {path} ---\n{text}")
    return "\n".join(parts) or f"(no log output in {cfg.service_dir(service)})"



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
    if not wait_ports_free(_ports(cfg, service), timeout_s=5.0):
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
    CHILDREN[proc.pid] = proc
    write_pid(cfg.pid_file(service), proc.pid)
    return proc.pid


def _wait_ready(cfg: StackConfig, services: dict[str, int], deadline: float) -> None:
    """Wait until every service in ``services`` (name -> pid) answers; raise on death/timeout."""
    pending = dict(services)
    while pending:
        for service, pid in list(pending.items()):
            if not proc_alive(pid):
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
        if is_ours(pid, cfg.config_file(service)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(proc_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for service, pid in pids.items():
        if proc_alive(pid) and is_ours(pid, cfg.config_file(service)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 10.0
    while time.monotonic() < kill_deadline and any(proc_alive(p) for p in pids.values()):
        time.sleep(0.05)
    for service, pid in pids.items():
        if proc_alive(pid):
            raise StackError(f"{service} (pid {pid}) did not exit even after SIGKILL")
        if read_pid(cfg.pid_file(service)) == pid:
            with contextlib.suppress(OSError):
                cfg.pid_file(service).unlink()


def _start_services(cfg: StackConfig, services: tuple[str, ...], timeout_s: float) -> StackStatus:
    started: dict[str, int] = {}
    try:
        waiting: dict[str, int] = {}
        # Redis first: it is up in milliseconds while the JVM starts.
        for service in sorted(services, key=lambda s: s != "redis"):
            pid = our_pid(cfg, service)
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
    with locked(cfg, timeout_s):
        return _start_services(cfg, SERVICES, timeout_s)


def start(cfg: StackConfig, service: str, timeout_s: float = 120.0) -> ServiceStatus:
    """Start one service (e.g. the broker after a SIGKILL, on the same data dir) and wait for it."""
    check_service(service)
    with locked(cfg, timeout_s):
        return _start_services(cfg, (service,), timeout_s).service(service)


def down(cfg: StackConfig, timeout_s: float = 30.0) -> None:
    """Stop exactly the processes this stack started (SIGTERM, then SIGKILL). Idempotent."""
    with locked(cfg, timeout_s):
        pids = {s: p for s in SERVICES if (p := our_pid(cfg, s)) is not None}
        if pids:
            _terminate(cfg, pids, timeout_s)


def kill(cfg: StackConfig, service: str, sig: int = signal.SIGKILL, wait_s: float = 30.0) -> int | None:
    """Send ``sig`` to our process for ``service``; returns its pid (None if not running).

    For SIGKILL/SIGTERM waits (bounded) until it is gone and drops the pid file, so a
    following start() sees a clean slate with the same data dir.
    """
    check_service(service)
    with locked(cfg, wait_s):
        pid = our_pid(cfg, service)
        if pid is None:
            return None
        os.kill(pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            deadline = time.monotonic() + wait_s
            while proc_alive(pid):
                if time.monotonic() >= deadline:
                    raise StackError(f"{service} (pid {pid}) still alive {wait_s:.0f}s after signal {sig}")
                time.sleep(0.05)
            with contextlib.suppress(OSError):
                cfg.pid_file(service).unlink()
            wait_ports_free(_ports(cfg, service), timeout_s=5.0)
        return pid


def status(cfg: StackConfig) -> StackStatus:
    """What runs where; probes each running service once (a few seconds at most)."""
    return StackStatus(home=cfg.home, kafka=_service_status(cfg, "kafka"), redis=_service_status(cfg, "redis"))


def wipe(cfg: StackConfig) -> None:
    """Delete the stack's data, logs and configs (the jar cache is kept). Must be stopped."""
    with locked(cfg, 30.0):
        running = [s for s in SERVICES if our_pid(cfg, s) is not None]
        if running:
            raise StackError(f"refusing to wipe {cfg.home}: {', '.join(running)} still running")
        for service in SERVICES:
            shutil.rmtree(cfg.service_dir(service), ignore_errors=True)
