from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError, markdown_table


def test_env_overrides_and_types():
    s = Settings.from_env({"TOUCHPOINT_NAMESPACE": "t1", "TOUCHPOINT_PARTITIONS": "8", "TOUCHPOINT_DLQ_ENCRYPT": "false"})
    assert (s.namespace, s.partitions, s.dlq_encrypt) == ("t1", 8, False)
    assert s.topic("touchpoints") == "t1.touchpoints" and s.app_id == "t1.touchpoint" and s.redis_prefix == "t1:"


@pytest.mark.parametrize("env, needle", [
    ({"TOUCHPOINT_PARTITIONS": "many"}, "TOUCHPOINT_PARTITIONS"),
    ({"TOUCHPOINT_PARTITIONS": "0"}, "TOUCHPOINT_PARTITIONS"),
    ({"TOUCHPOINT_NAMESPACE": "a.b"}, "TOUCHPOINT_NAMESPACE"),
    ({"TOUCHPOINT_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of"),
    ({"TOUCHPOINT_DLQ_ENCRYPT": "maybe"}, "true or false"),
    ({"TOUCHPOINT_DEDUP_WINDOW_S": "0"}, "TOUCHPOINT_DEDUP_WINDOW_S"),
    ({"TOUCHPOINT_DEDUP_SHARD_BITS": "33"}, "TOUCHPOINT_DEDUP_SHARD_BITS"),
    ({"TOUCHPOINT_DEDUP_SHARD_BITS": "-1"}, "TOUCHPOINT_DEDUP_SHARD_BITS"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


def test_secrets_are_masked():
    described = Settings.from_env({"TOUCHPOINT_PII_KEY": "s3cret"}).describe()
    assert described["pii_key"] == "***"


def test_readme_settings_table_matches_the_code():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "regenerate with: .venv/bin/python -m streams.settings --update-readme"


def test_credentials_never_print_in_describe_or_repr():
    # issue 21 Medium 8 / issue 20 item 5: the worker's start-up line printed both URLs verbatim
    env = {"TOUCHPOINT_REDIS_URL": "rediss://tp:redis-pw@redis:6380/0", "TOUCHPOINT_ALERTMANAGER_URL": "http://am:am-pw@am:9093/?token=q7tokq7",
           "TOUCHPOINT_PII_KEY": "pii-secret", "TOUCHPOINT_KAFKA_SASL_PASSWORD": "sasl-pw", "TOUCHPOINT_WEB_TOKEN": "web-tok",
           "TOUCHPOINT_WRITE_KEYS": "wk-1"}
    s = Settings.from_env(env)
    described = s.describe()
    assert described["redis_url"] == "rediss://tp:***@redis:6380/0"
    assert described["alertmanager_url"] == "http://am:***@am:9093/?token=***"
    for text in (str(described), repr(s), str(s)):
        for secret in ("redis-pw", "am-pw", "pii-secret", "sasl-pw", "web-tok", "wk-1", "q7tokq7"):
            assert secret not in text, (secret, text)
    assert s.redis_url.endswith("redis-pw@redis:6380/0")  # the value itself is intact


@pytest.mark.parametrize("env, needle", [
    ({"TOUCHPOINT_WEB_PORT": "0"}, "TOUCHPOINT_WEB_PORT=0: a port is between 1 and 65535"),
    ({"TOUCHPOINT_COLLECTOR_PORT": "70000"}, "TOUCHPOINT_COLLECTOR_PORT=70000"),
    ({"TOUCHPOINT_DEMAND_TIMEZONE": "Mars/Base"}, "not an IANA time zone"),
    ({"TOUCHPOINT_DEMAND_DIMENSIONS": "product,bogus"}, "unknown demand dimension"),
    ({"TOUCHPOINT_KAFKA_SECURITY_PROTOCOL": "SSL", "TOUCHPOINT_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file"),
])
def test_unusable_values_are_refused_at_start(env, needle):
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


def test_the_advertised_host_is_reachable_not_the_wildcard():
    import socket

    assert Settings.from_env({}).advertised_host == "127.0.0.1"
    assert Settings.from_env({"TOUCHPOINT_WEB_HOST": "0.0.0.0"}).advertised_host == socket.gethostname()
    assert Settings.from_env({"TOUCHPOINT_WEB_HOST": "0.0.0.0", "TOUCHPOINT_WEB_ADVERTISED_HOST": "w1"}).advertised_host == "w1"
