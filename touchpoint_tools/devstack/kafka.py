"""Kafka side of the local stack: fetch the broker jars, render config, format, probe.

Everything here is either pure (rendering, command lines) or touches one thing
(the jar cache, the data dir, a socket); process lifecycle lives in ``stack.py``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from string import Template

DEFAULT_KAFKA_VERSION = "4.4.0"
# Pinned: the plugin version mvn would pick by itself is whatever sits in the local
# repository (an ancient 2.8 on our machines).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class FetchError(RuntimeError):
    """Maven could not assemble the broker classpath."""


def resource_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- config


def escape_property_value(value: str) -> str:
    """Escape a value for java.util.Properties (backslash is the only trap in values)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    # A leading space would be swallowed by the Properties parser.
    if out.startswith(" "):
        out = "\\" + out
    return out


def render_server_properties(
    *,
    host: str,
    kafka_port: int,
    controller_port: int,
    log_dir: Path,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """server.properties for a single combined KRaft node; overrides win (appended last)."""
    if kafka_port == controller_port:
        raise ValueError("kafka_port and controller_port must differ")
    text = Template(resource_text("server.properties")).substitute(
        host=host,
        kafka_port=kafka_port,
        controller_port=controller_port,
        log_dirs=escape_property_value(str(log_dir)),
    )
    if overrides:
        text += "\n# --- overrides from StackConfig.kafka_overrides ---\n"
        for key, value in overrides.items():
            if not key or any(c in key for c in " =:\n"):
                raise ValueError(f"bad broker property name: {key!r}")
            text += f"{key}={escape_property_value(str(value))}\n"
    return text


def parse_properties(text: str) -> dict[str, str]:
    """Minimal reader for the files we render (last key wins, like java.util.Properties)."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip().replace("\\\\", "\\")
    return props


def new_cluster_id() -> str:
    """Same shape as Kafka's Uuid.randomUuid().toString(): 22 chars of url-safe base64."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # Kafka refuses ids that start with '-' (they look like CLI flags).
        if not cid.startswith("-"):
            return cid


# --------------------------------------------------------------------------- jars


def kafka_home(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"kafka-{version}"


def lib_dir(cache_dir: Path, version: str) -> Path:
    return kafka_home(cache_dir, version) / "lib"


def libs_complete(lib: Path, version: str) -> bool:
    return (lib / f"kafka_2.13-{version}.jar").is_file() and (lib.parent / "COMPLETE").is_file()


def maven_command(pom: Path, out_dir: Path, version: str, mvn: str = "mvn") -> list[str]:
    return [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out_dir}",
        f"-Dkafka.version={version}",
    ]


def ensure_kafka_libs(cache_dir: Path, version: str, timeout_s: float = 900.0) -> Path:
    """Return the lib dir for ``version``, fetching it with Maven once.

    The download goes into a temp dir next to the final one and is renamed into place,
    so a crash mid-download never leaves a cache that looks complete. A per-version
    flock keeps two concurrent callers from downloading twice.
    """
    lib = lib_dir(cache_dir, version)
    if libs_complete(lib, version):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchError("mvn not found on PATH (run scripts/install-system-deps.sh)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".kafka-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if libs_complete(lib, version):  # someone else finished while we waited
            return lib
        final = kafka_home(cache_dir, version)
        tmp = Path(tempfile.mkdtemp(prefix=f".kafka-{version}.", dir=cache_dir))
        try:
            # Copy the pom out of the package so Maven never writes next to the sources.
            pom = tmp / "pom.xml"
            pom.write_text(resource_text("pom.xml"), encoding="utf-8")
            cmd = maven_command(pom, tmp / "lib", version, mvn)
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise FetchError(f"Maven fetch of Kafka {version} timed out after {timeout_s:.0f}s") from exc
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
                raise FetchError(f"Maven fetch of Kafka {version} failed ({' '.join(cmd)}):\n{tail}")
            if not (tmp / "lib" / f"kafka_2.13-{version}.jar").is_file():
                raise FetchError(f"Maven finished but kafka_2.13-{version}.jar is missing")
            pom.unlink()
            (tmp / "COMPLETE").write_text(
                f"kafka {version}\nfetched in {time.monotonic() - started:.1f}s\n", encoding="utf-8"
            )
            if final.exists():  # a stale, incomplete dir from an older layout
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return lib


def cache_size_bytes(lib: Path) -> int:
    return sum(p.stat().st_size for p in lib.glob("*.jar"))


# --------------------------------------------------------------------------- processes


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise FileNotFoundError("java not found (set JAVA_HOME or run scripts/install-system-deps.sh)")
    return java


def classpath(lib: Path) -> str:
    # The JVM expands "dir/*" itself; no shell involved.
    return f"{lib}/*"


def scram_argument(mechanism: str, user: str, password: str) -> str:
    """One ``--add-scram`` value: ``SCRAM-SHA-512=[name=alice,password=secret]``."""
    if mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ValueError(f"unknown SCRAM mechanism {mechanism!r}")
    for part in (user, password):
        if not part or any(c in part for c in ',=[]"\n'):
            raise ValueError("SCRAM user names and passwords must be non-empty without , = [ ] \" or newlines")
    return f"{mechanism}=[name={user},password={password}]"


def format_command(java: str, lib: Path, cluster_id: str, server_properties: Path,
                   scram_users: Mapping[str, str] | None = None, scram_mechanism: str = "SCRAM-SHA-512") -> list[str]:
    """StorageTool format; ``scram_users`` (name -> password) are seeded into the metadata log
    (KRaft has no ZooKeeper to hold SCRAM credentials; ``--add-scram`` is the bootstrap path)."""
    cmd = [
        java,
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        classpath(lib),
        STORAGE_TOOL,
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(server_properties),
    ]
    for user, password in (scram_users or {}).items():
        cmd += ["--add-scram", scram_argument(scram_mechanism, user, password)]
    return cmd


def sasl_listener_overrides(host: str, kafka_port: int, controller_port: int, sasl_port: int,
                            mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    """Broker properties adding a SASL_PLAINTEXT listener (SCRAM) next to the PLAINTEXT one.

    The PLAINTEXT listener stays (the readiness probe and inter-broker traffic use it); clients
    that must authenticate use ``host:sasl_port``. Pass the result as ``StackConfig.kafka_overrides``
    together with ``kafka_scram_users``.
    """
    if len({kafka_port, controller_port, sasl_port}) != 3:
        raise ValueError("kafka, controller and SASL ports must differ")
    return {
        "listeners": f"PLAINTEXT://{host}:{kafka_port},CONTROLLER://{host}:{controller_port},SASL_PLAINTEXT://{host}:{sasl_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{kafka_port},SASL_PLAINTEXT://{host}:{sasl_port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": mechanism,
        f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }


def broker_command(
    *,
    java: str,
    lib: Path,
    server_properties: Path,
    log4j_config: Path,
    logs_dir: Path,
    heap_mb: int,
    fast_jit: bool,
) -> list[str]:
    """JVM flags follow bin/kafka-run-class.sh (G1, short pauses) with a smaller heap."""
    cmd = [
        java,
        "-Xms256m" if heap_mb >= 256 else f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        # A dev broker that ran out of heap should die visibly, not limp along.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs_dir}",
        f"-Dlog4j2.configurationFile={log4j_config}",
    ]
    if fast_jit:
        # C1 only: less JIT CPU while starting on 2 cores; peak throughput is not the point.
        cmd.append("-XX:TieredStopAtLevel=1")
    cmd += ["-cp", classpath(lib), MAIN_CLASS, str(server_properties)]
    return cmd


def is_formatted(data_dir: Path) -> bool:
    return (data_dir / "meta.properties").is_file()


def format_storage(
    java: str, lib: Path, cluster_id: str, server_properties: Path, log_file: Path, timeout_s: float = 60.0,
    scram_users: Mapping[str, str] | None = None,
) -> None:
    """Run StorageTool format once; output goes to ``log_file`` for post-mortems."""
    cmd = format_command(java, lib, cluster_id, server_properties, scram_users)
    shown = [("--add-scram <redacted>" if a.startswith("SCRAM-") else a) for a in cmd]  # no passwords in logs
    with open(log_file, "ab") as log:
        log.write(f"\n---- format {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(shown)}\n".encode())
        log.flush()
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
        )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


# --------------------------------------------------------------------------- probe


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


async def _metadata_ok(bootstrap: str, timeout_s: float) -> bool:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    probe_errors = (KafkaError, OSError, asyncio.TimeoutError)
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
        client_id="touchpoint-devstack-probe",
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        # A fenced broker can answer with no brokers; only a listed broker is usable.
        return bool(client.cluster.brokers())
    except probe_errors:
        return False
    finally:
        # A failed close of a throw-away probe client changes nothing about the answer.
        with contextlib.suppress(*probe_errors):
            await asyncio.wait_for(client.close(), timeout_s)


def probe(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """True when the broker answers a metadata request listing at least one broker.

    Runs the aiokafka client on a private loop in a worker thread so callers may be
    plain sync code or code already inside a running event loop.
    """
    # Cheap TCP check first: keeps aiokafka from logging connection errors while the
    # JVM is still starting.
    if not port_open(host, port):
        return False
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(asyncio.run, _metadata_ok(f"{host}:{port}", timeout_s))
        try:
            return fut.result(timeout=timeout_s + 2.0)
        except concurrent.futures.TimeoutError:
            return False
