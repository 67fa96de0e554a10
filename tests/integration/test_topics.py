"""Project topics on the real broker: created with the configured partition count, and a
mismatch with existing topics stops a worker with a clear message (bundles and co-partitioned
tables rely on the count)."""

from __future__ import annotations

import asyncio

import pytest

from streams.kafka.topics import TOPICS, ensure_topics
from streams.settings import SettingsError
from tests.fixtures.stack import run_cli

pytestmark = pytest.mark.integration


def test_existing_topics_with_another_partition_count_are_refused(settings) -> None:
    settings = settings.with_(partitions=2)
    created = asyncio.run(ensure_topics(settings))
    assert sorted(created) == sorted(settings.topic(t.name) for t in TOPICS)
    assert asyncio.run(ensure_topics(settings)) == []  # idempotent, counts agree

    with pytest.raises(SettingsError, match=r"has 2, but TOUCHPOINT_PARTITIONS=3"):
        asyncio.run(ensure_topics(settings.with_(partitions=3)))
    worker = run_cli(settings.with_(partitions=3), "worker", timeout_s=60)
    assert worker.returncode == 2
    assert b"partition count mismatch" in worker.stderr and b"Traceback" not in worker.stderr


def test_reading_a_missing_topic_is_a_clear_error(settings) -> None:
    """read_to_end on a topic that does not exist: a one-line MissingTopicError naming it (it was a
    bare CancelledError out of aiokafka's consumer.stop())."""
    from streams.kafka.reading import MissingTopicError, read_to_end

    async def read() -> list[object]:
        return [r async for r in read_to_end(settings, settings.topic("no-such-topic"), 10)]

    with pytest.raises(MissingTopicError, match=r"no-such-topic does not exist"):
        asyncio.run(read())
    export = run_cli(settings.with_(namespace=settings.namespace + "-empty"), "identity", "rebuild", timeout_s=60)
    assert export.returncode == 2 and b"does not exist" in export.stderr and b"Traceback" not in export.stderr, export.stderr
