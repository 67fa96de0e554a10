import argparse

import pytest

from streams.cli.collect import config_for
from streams.cli.errors import UsageError
from streams.collector.publisher import KafkaPublisher, PublishError
from streams.settings import Settings, SettingsError


def args(allow_no_auth: bool = False) -> argparse.Namespace:
    return argparse.Namespace(host=None, port=None, allow_no_auth=allow_no_auth)


def test_no_write_keys_refuses_to_start_with_a_clear_message():
    with pytest.raises(UsageError, match="TOUCHPOINT_WRITE_KEYS"):
        config_for(args(), Settings.from_env({}))
    assert not config_for(args(allow_no_auth=True), Settings.from_env({})).auth_required


def test_write_keys_come_from_the_setting():
    config = config_for(args(), Settings.from_env({"TOUCHPOINT_WRITE_KEYS": " a , b,,", "TOUCHPOINT_COLLECTOR_BURST": "7"}))
    assert config.write_keys == frozenset({"a", "b"}) and config.burst == 7 and config.auth_required


def test_write_keys_are_masked_and_limits_validated():
    assert Settings.from_env({"TOUCHPOINT_WRITE_KEYS": "secret"}).describe()["write_keys"] == "***"
    with pytest.raises(SettingsError, match="TOUCHPOINT_COLLECTOR_RATE_PER_S"):
        Settings.from_env({"TOUCHPOINT_COLLECTOR_RATE_PER_S": "0"})


async def test_publishing_before_kafka_is_connected_is_an_error_not_a_silent_drop():
    publisher = KafkaPublisher(Settings.from_env({}))
    assert not publisher.ready
    with pytest.raises(PublishError, match="not connected"):
        await publisher.publish([(None, b"{}")])
