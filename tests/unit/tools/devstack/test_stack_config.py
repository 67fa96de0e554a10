"""Pure parts of touchpoint_tools.devstack.stack: config, paths, pid bookkeeping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.settings import Settings
from touchpoint_tools.devstack import StackConfig, StackError, stack, status


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = StackConfig()
    assert cfg.home == tmp_path / ".local" / "share" / "touchpoint" / "stack"
    assert cfg.cache_dir == tmp_path / ".cache" / "touchpoint"
    assert cfg.kafka_port == 19092 and cfg.controller_port == 19093 and cfg.redis_port == 16379
    assert cfg.kafka_version.startswith("4.")


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"TOUCHPOINT_STACK_KAFKA_PORT": "20000", "TOUCHPOINT_STACK_REDIS_PORT": "20002",
                                  "TOUCHPOINT_STACK_CONTROLLER_PORT": "20001", "TOUCHPOINT_STACK_DIR": str(tmp_path)})
    cfg = StackConfig.from_settings(settings)
    assert (cfg.kafka_port, cfg.controller_port, cfg.redis_port) == (20000, 20001, 20002)
    assert cfg.home == tmp_path
    assert cfg.bootstrap_servers == "127.0.0.1:20000"
    assert cfg.redis_url == "redis://127.0.0.1:20002/0"


def test_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = StackConfig(home=Path("rel"), cache_dir=Path("c"))
    assert cfg.home == tmp_path / "rel"
    assert cfg.config_file("kafka") == tmp_path / "rel" / "kafka" / "server.properties"
    assert cfg.config_file("redis") == tmp_path / "rel" / "redis" / "redis.conf"
    assert cfg.pid_file("redis").name == "redis.pid"
    assert cfg.data_dir("kafka") == tmp_path / "rel" / "kafka" / "data"


@pytest.mark.parametrize(
    "kw",
    [
        {"kafka_port": 1, "controller_port": 1},
        {"redis_port": 19092},
        {"kafka_port": 70000},
        {"kafka_version": "3.9.2"},
        {"kafka_version": "latest"},
        {"kafka_heap_mb": 64},
    ],
)
def test_invalid_configs(kw: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StackConfig(home=tmp_path, cache_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_overrides_frozen(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path, cache_dir=tmp_path, kafka_overrides={"a": "1"})
    with pytest.raises(TypeError):
        cfg.kafka_overrides["b"] = "2"  # type: ignore[index]


def test_unknown_service(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path, cache_dir=tmp_path)
    with pytest.raises(ValueError):
        cfg.pid_file("zookeeper")


def test_cmdline_matching() -> None:
    cmd = b"java\0-cp\0/x/*\0kafka.Kafka\0/home/s/kafka/server.properties\0"
    assert stack.cmdline_matches(cmd, "/home/s/kafka/server.properties")
    # A prefix or another home's file must not match.
    assert not stack.cmdline_matches(cmd, "/home/s/kafka/server.prop")
    assert not stack.cmdline_matches(cmd, "/home/other/kafka/server.properties")


def test_stale_pid_file_is_ignored_and_removed(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path, cache_dir=tmp_path, kafka_port=29990, controller_port=29991, redis_port=29992)
    for service in ("kafka", "redis"):
        cfg.service_dir(service).mkdir(parents=True)
        # Our own pid: alive, but its cmdline does not name the config file -> not ours.
        cfg.pid_file(service).write_text(f"{os.getpid()}\n")
    st = status(cfg)
    assert st.stopped and not st.ready
    assert st.kafka.pid is None and st.redis.pid is None
    assert not cfg.pid_file("kafka").exists() and not cfg.pid_file("redis").exists()
    stack.down(cfg)  # idempotent no-op; must not signal the test process


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    out = stack.tail(log, 3)
    assert out.splitlines() == ["line 97", "line 98", "line 99"]
    assert stack.tail(tmp_path / "missing") == ""


def test_lock_times_out(tmp_path: Path) -> None:
    import fcntl

    cfg = StackConfig(home=tmp_path, cache_dir=tmp_path)
    with open(cfg.lock_file, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        # flock locks are per open file description, so a second open in-process conflicts.
        with pytest.raises(StackError, match="holds"), stack.locked(cfg, timeout_s=0.3):
            pass


def test_status_as_dict_shape(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path, cache_dir=tmp_path, kafka_port=29980, controller_port=29981, redis_port=29982)
    d = status(cfg).as_dict()
    assert d["ready"] is False
    assert set(d["kafka"]) == {"pid", "address", "running", "answering", "data_dir", "log_file", "version"}  # type: ignore[arg-type]
    assert d["kafka"]["address"] == "127.0.0.1:29980"  # type: ignore[index]
