"""Pure parts of touchpoint_tools.devstack.kafka: config rendering and command lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from touchpoint_tools.devstack import kafka


def render(**kw: object) -> dict[str, str]:
    args: dict[str, object] = {
        "host": "127.0.0.1",
        "kafka_port": 19092,
        "controller_port": 19093,
        "log_dir": Path("/d/data"),
    }
    args.update(kw)
    return kafka.parse_properties(kafka.render_server_properties(**args))  # type: ignore[arg-type]


def test_single_combined_kraft_node_on_loopback() -> None:
    props = render()
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == "/d/data"


def test_test_friendly_settings() -> None:
    props = render()
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["offsets.topic.num.partitions"]) <= 8
    # message.max.bytes stays at the broker default (matches faust's producer limit).
    assert "message.max.bytes" not in props
    assert int(props["broker.heartbeat.interval.ms"]) < int(props["broker.session.timeout.ms"])


def test_no_placeholders_left() -> None:
    text = kafka.render_server_properties(host="127.0.0.1", kafka_port=1, controller_port=2, log_dir=Path("/x"))
    assert "${" not in text
    assert not re.search(r"\$\w", text)


def test_overrides_are_appended_and_win() -> None:
    props = render(overrides={"num.partitions": "3", "log.retention.ms": "1000"})
    assert props["num.partitions"] == "3"
    assert props["log.retention.ms"] == "1000"


@pytest.mark.parametrize("key", ["", "a b", "a=b", "a:b"])
def test_bad_override_key_rejected(key: str) -> None:
    with pytest.raises(ValueError):
        render(overrides={key: "1"})


def test_same_ports_rejected() -> None:
    with pytest.raises(ValueError):
        render(kafka_port=5, controller_port=5)


def test_backslash_in_path_is_escaped() -> None:
    text = kafka.render_server_properties(host="h", kafka_port=1, controller_port=2, log_dir=Path("/a\\b"))
    assert "log.dirs=/a\\\\b" in text
    assert kafka.escape_property_value(" x") == "\\ x"


def test_cluster_id_shape() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert not cid.startswith("-")


def test_maven_command_pins_plugin_and_version(tmp_path: Path) -> None:
    cmd = kafka.maven_command(tmp_path / "pom.xml", tmp_path / "lib", "4.4.0", mvn="mvn")
    assert cmd[0] == "mvn"
    assert any(re.fullmatch(r"org\.apache\.maven\.plugins:maven-dependency-plugin:\d+\.\d+\.\d+:copy-dependencies", c) for c in cmd)
    assert "-DincludeScope=runtime" in cmd
    assert f"-DoutputDirectory={tmp_path / 'lib'}" in cmd
    assert "-Dkafka.version=4.4.0" in cmd


def test_lib_dir_outside_and_versioned(tmp_path: Path) -> None:
    assert kafka.lib_dir(tmp_path, "4.4.0") == tmp_path / "kafka-4.4.0" / "lib"
    assert not kafka.libs_complete(kafka.lib_dir(tmp_path, "4.4.0"), "4.4.0")
    lib = kafka.lib_dir(tmp_path, "4.4.0")
    lib.mkdir(parents=True)
    (lib / "kafka_2.13-4.4.0.jar").write_bytes(b"")
    # Without the COMPLETE marker (written last, before the rename) the cache is not trusted.
    assert not kafka.libs_complete(lib, "4.4.0")
    (lib.parent / "COMPLETE").write_text("ok")
    assert kafka.libs_complete(lib, "4.4.0")
    assert kafka.ensure_kafka_libs(tmp_path, "4.4.0") == lib  # no Maven call when complete


def test_broker_command(tmp_path: Path) -> None:
    props = tmp_path / "server.properties"
    cmd = kafka.broker_command(
        java="java",
        lib=tmp_path / "lib",
        server_properties=props,
        log4j_config=tmp_path / "log4j2.yaml",
        logs_dir=tmp_path / "logs",
        heap_mb=768,
        fast_jit=True,
    )
    assert cmd[0] == "java"
    assert "-Xmx768m" in cmd and "-Xms256m" in cmd and "-XX:+UseG1GC" in cmd
    assert "-XX:TieredStopAtLevel=1" in cmd
    assert f"-Dlog4j2.configurationFile={tmp_path / 'log4j2.yaml'}" in cmd
    assert cmd[-3:] == [f"{tmp_path / 'lib'}/*", "kafka.Kafka", str(props)]
    slow = kafka.broker_command(
        java="java",
        lib=tmp_path,
        server_properties=props,
        log4j_config=props,
        logs_dir=tmp_path,
        heap_mb=128,
        fast_jit=False,
    )
    assert "-XX:TieredStopAtLevel=1" not in slow and "-Xms128m" in slow


def test_format_command(tmp_path: Path) -> None:
    cmd = kafka.format_command("java", tmp_path, "abc", tmp_path / "s.properties")
    i = cmd.index("kafka.tools.StorageTool")
    assert cmd[i + 1 :] == ["format", "--standalone", "-t", "abc", "-c", str(tmp_path / "s.properties")]


def test_is_formatted(tmp_path: Path) -> None:
    assert not kafka.is_formatted(tmp_path)
    (tmp_path / "meta.properties").write_text("x")
    assert kafka.is_formatted(tmp_path)


def test_pom_and_log4j_resources_ship() -> None:
    pom = kafka.resource_text("pom.xml")
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "log4j-slf4j-impl" in pom and "log4j-core" in pom
    assert f"<kafka.version>{kafka.DEFAULT_KAFKA_VERSION}</kafka.version>" in pom
    assert "<packaging>pom</packaging>" in pom
    assert "kafka.logs.dir" in kafka.resource_text("log4j2.yaml")


def test_probe_closed_port_is_false() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert kafka.probe("127.0.0.1", port, timeout_s=0.5) is False
