"""Pure parts of touchpoint_tools.devstack.redis."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from touchpoint_tools.devstack import redis


def conf(tmp_path: Path) -> dict[str, str]:
    text = redis.render_redis_conf(host="127.0.0.1", port=16379, data_dir=tmp_path / "my data")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value
    return out


def test_durable_loopback_foreground(tmp_path: Path) -> None:
    c = conf(tmp_path)
    assert c["bind"] == "127.0.0.1"
    assert c["port"] == "16379"
    assert c["protected-mode"] == "yes"
    assert c["daemonize"] == "no"
    assert c["appendonly"] == "yes"
    assert c["save"] == '""'
    # Quoted because the path has a space.
    assert c["dir"] == f'"{tmp_path / "my data"}"'
    # stack.py identifies the process by its argv; Redis must not rewrite it.
    assert c["set-proc-title"] == "no"


def test_bad_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        redis.render_redis_conf(host="127.0.0.1", port=0, data_dir=tmp_path)


def test_quote_escapes() -> None:
    assert redis._quote('a"b\\c') == '"a\\"b\\\\c"'


def test_server_command(tmp_path: Path) -> None:
    assert redis.server_command("/bin/redis-server", tmp_path / "r.conf") == ["/bin/redis-server", str(tmp_path / "r.conf")]


def test_probe_closed_port_is_false() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert redis.probe("127.0.0.1", port, timeout_s=0.5) is False
