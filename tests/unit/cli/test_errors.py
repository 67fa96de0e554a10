"""Every CLI error is one line and exit 2, never a traceback (issue 21, Low list).

Each row runs ``touchpoint`` in-process with its environment; Kafka and Redis "unreachable" are
closed loopback ports, so no broker is needed. Each row failed on the code before the fix:
a traceback, or the bad value silently accepted.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams.cli.main import main

CLOSED = "127.0.0.1:1"  # nothing listens on port 1 of loopback: connection refused at once


def busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.fixture
def busy():
    sock = busy_port()
    yield sock.getsockname()[1]
    sock.close()


ROWS = [
    # (name, argv, environment, what the line must say)
    ("detect on a directory", ["detect", "--csv", "{tmp}"], {}, "{tmp}: is a directory"),
    ("collect port out of range", ["collect", "--allow-no-auth", "--port", "70000"], {}, "--port 70000: a port is between 1 and 65535"),
    ("collect port busy", ["collect", "--allow-no-auth", "--port", "{busy}"], {}, "cannot listen on 127.0.0.1:{busy}"),
    ("worker web port 0", ["worker", "--web-port", "0"], {"TOUCHPOINT_DEV_MODE": "1"}, "--web-port 0: a port is between 1 and 65535"),
    ("worker web port busy", ["worker", "--web-port", "{busy}"], {"TOUCHPOINT_DEV_MODE": "1"}, "cannot listen on 127.0.0.1:{busy}"),
    ("worker port setting out of range", ["worker"], {"TOUCHPOINT_DEV_MODE": "1", "TOUCHPOINT_WEB_PORT": "99999"}, "TOUCHPOINT_WEB_PORT=99999"),
    ("wait-idle negative timeout", ["wait-idle", "--timeout", "-1"], {}, "--timeout -1: must not be negative"),
    ("simulate negative rate", ["simulate", "--rate", "-1"], {}, "--rate -1: must not be negative"),
    ("demo negative events", ["demo", "--events", "-1"], {}, "--events -1: must not be negative"),
    ("unknown time zone", ["wait-idle"], {"TOUCHPOINT_DEMAND_TIMEZONE": "Mars/Base"}, "TOUCHPOINT_DEMAND_TIMEZONE='Mars/Base': not an IANA time zone"),
    ("unknown dimension", ["wait-idle"], {"TOUCHPOINT_DEMAND_DIMENSIONS": "bogus"}, "TOUCHPOINT_DEMAND_DIMENSIONS='bogus': unknown demand dimension"),
    ("missing CA file", ["wait-idle"], {"TOUCHPOINT_KAFKA_SECURITY_PROTOCOL": "SSL", "TOUCHPOINT_KAFKA_SSL_CAFILE": "{tmp}/no-ca.pem"},
     "TOUCHPOINT_KAFKA_SSL_CAFILE='{tmp}/no-ca.pem': no such file"),
    ("Kafka unreachable: wait-idle", ["wait-idle", "--timeout", "2"], {"TOUCHPOINT_KAFKA_BOOTSTRAP": CLOSED}, f"Kafka at {CLOSED}: KafkaConnectionError"),
    ("Kafka unreachable: send", ["send", "{tmp}/records.jsonl"], {"TOUCHPOINT_KAFKA_BOOTSTRAP": CLOSED}, f"Kafka at {CLOSED}: KafkaConnectionError"),
    ("Kafka unreachable: worker", ["worker", "--web-port", "{free}"], {"TOUCHPOINT_DEV_MODE": "1", "TOUCHPOINT_KAFKA_BOOTSTRAP": CLOSED},
     f"Kafka at {CLOSED}: KafkaConnectionError"),
    ("Kafka unreachable: dlq summary", ["dlq", "summary"], {"TOUCHPOINT_KAFKA_BOOTSTRAP": CLOSED}, f"Kafka at {CLOSED}: KafkaConnectionError"),
    ("default PII key: worker", ["worker"], {}, "TOUCHPOINT_PII_KEY is not set"),
    ("default PII key: erase", ["erase", "--id", "user_id:1"], {}, "TOUCHPOINT_PII_KEY is not set"),
    ("default PII key: dlq show", ["dlq", "show"], {}, "TOUCHPOINT_PII_KEY is not set"),
]


@pytest.mark.parametrize("name, argv, env, needle", ROWS, ids=[r[0] for r in ROWS])
def test_cli_errors_are_one_line_and_exit_2(name, argv, env, needle, tmp_path, busy, monkeypatch, capsys):
    free = busy_port()
    free_port = free.getsockname()[1]
    free.close()
    (tmp_path / "records.jsonl").write_text('{"type":"track"}\n')
    fill = {"tmp": str(tmp_path), "busy": str(busy), "free": str(free_port)}
    for var in [v for v in list(__import__("os").environ) if v.startswith("TOUCHPOINT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("TOUCHPOINT_NAMESPACE", "clierr")
    monkeypatch.setenv("TOUCHPOINT_STACK_DIR", str(tmp_path / "stack"))
    for var, value in env.items():
        monkeypatch.setenv(var, value.format(**fill))
    code = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("touchpoint")]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert len(ours) == 1 and needle.format(**fill) in ours[0], err[-2000:]
    assert "hunter2" not in err


def test_redis_unreachable_is_one_line_with_the_password_masked():
    from redis import Redis

    from streams.cli.errors import environment_error
    from streams.settings import Settings

    settings = Settings.from_env({"TOUCHPOINT_REDIS_URL": "redis://tp:hunter2@127.0.0.1:1/0"})
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    with pytest.raises(Exception) as caught:
        client.ping()
    message = environment_error(caught.value, settings)
    assert message is not None and message.startswith("Redis at redis://tp:***@127.0.0.1:1/0: ConnectionError")
    assert "hunter2" not in message and "\n" not in message
    assert environment_error(ValueError("a bug"), settings) is None  # bugs keep their traceback


def test_dev_mode_allows_the_default_key_and_demo_turns_it_on(monkeypatch):
    from streams.settings import DEV_PII_KEY, Settings, SettingsError

    with pytest.raises(SettingsError, match="TOUCHPOINT_DEV_MODE"):
        Settings.from_env({}).require_pii_key()
    Settings.from_env({"TOUCHPOINT_DEV_MODE": "true"}).require_pii_key()
    Settings.from_env({"TOUCHPOINT_PII_KEY": "own-secret"}).require_pii_key()
    seen = {}
    import streams.cli.demo as demo

    def fake_run(args, settings):
        seen["settings"] = settings
        return 0

    monkeypatch.setattr(demo, "run", fake_run)
    monkeypatch.delenv("TOUCHPOINT_PII_KEY", raising=False)
    monkeypatch.delenv("TOUCHPOINT_DEV_MODE", raising=False)
    assert main(["demo", "--events", "10"]) == 0
    assert seen["settings"].dev_mode and seen["settings"].pii_key == DEV_PII_KEY
    assert seen["settings"].to_env()["TOUCHPOINT_DEV_MODE"] == "true"  # what its workers inherit


def test_the_detect_guard_names_the_file(tmp_path, capsys):
    assert Path(tmp_path).is_dir()
    assert main(["detect", "--csv", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"touchpoint detect: {tmp_path / 'missing.csv'}: no such file"
