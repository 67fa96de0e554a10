"""Issue 21, High 1: the producer is never allowed records the broker or a topic refuses, and a
partition that keeps failing shows as stuck."""

from streams.kafka.limits import record_limit_problem
from streams.settings import Settings, SettingsError


def test_limits_problem_names_the_first_smaller_limit():
    assert record_limit_problem(1_000_000, {"1": 1_048_588}, {"tp.a": 1_048_588}) is None
    line = record_limit_problem(1_000_000, {"1": 1_048_588}, {"tp.profiles-changelog": 500_000})
    assert line is not None and "tp.profiles-changelog accepts 500000" in line and "\n" not in line


def test_the_old_producer_setting_is_refused_by_a_default_broker():
    # faust's producer was given 4 MiB while the broker allows 1 MiB (1048588 bytes)
    assert record_limit_problem(4 * 1024 * 1024, {"1": 1_048_588}, {}) is not None
    assert record_limit_problem(Settings().max_record_bytes, {"1": 1_048_588}, {}) is None


def test_a_profile_must_fit_a_record_with_room_for_a_merge():
    import pytest

    with pytest.raises(SettingsError, match="TOUCHPOINT_PROFILE_MAX_BYTES"):
        Settings.from_env({}, profile_max_bytes=600_000)
    with pytest.raises(SettingsError, match="TOUCHPOINT_MAX_RECORD_BYTES must be positive"):
        Settings.from_env({}, max_record_bytes=0)


def test_a_partition_failing_without_completing_is_stuck_until_it_completes():
    """/readyz and touchpoint_partition_stuck_seconds read this (issue 21: a wedged partition
    retried for ever while /readyz said ready)."""
    import time

    from streams.kafka.ordering import OrderedSource

    source = OrderedSource(None, "ns.profile-events", "profiles", None)  # type: ignore[arg-type]
    now = time.monotonic()
    assert source.stuck_seconds(now) == 0.0
    source.fail({1: (41, 1)})
    source.fail({1: (41, 2)})  # retried and failed again: still counted from the first failure
    assert source.stuck_seconds(now + 45) > 44
    source.complete({2: (7, 1)})  # another partition progressing does not clear partition 1
    assert source.stuck_seconds(now + 45) > 44
    source.complete({1: (41, 3)})
    assert source.stuck_seconds(now + 45) == 0.0


def test_restart_all_forgets_every_cursor_and_counts_them_failing():
    import time

    from streams.kafka.ordering import OrderedSource

    source = OrderedSource(None, "ns.touchpoints", "ingest", None)  # type: ignore[arg-type]
    source.guard.start(0, 10)
    source.guard.start(3, 7)
    source.restart_all()
    assert source.guard.partitions() == [] and sorted(source.failing_since) == [0, 3]
    assert source.stuck_seconds(time.monotonic() + 5) > 4
