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
