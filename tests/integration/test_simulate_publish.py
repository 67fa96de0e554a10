"""The simulator's publisher on the real broker: ``hold`` is awaited every ``hold_every`` records,
only once they are acknowledged (``touchpoint demo`` holds its traffic there while the worker is
behind), and a held publisher still publishes every record."""

from __future__ import annotations

import asyncio

import pytest

from streams.cli.simulate import publish_stream
from streams.kafka.reading import read_to_end
from streams.kafka.topics import INPUT, ensure_topics

pytestmark = pytest.mark.integration


def test_the_publisher_holds_after_acknowledged_records(settings) -> None:
    settings = settings.with_(partitions=2)
    asyncio.run(ensure_topics(settings))
    records = [b'{"n": %d}' % i for i in range(250)]
    seen: list[tuple[int, int]] = []

    async def count_on_broker() -> int:
        return len([r async for r in read_to_end(settings, settings.topic(INPUT), 20)])

    async def hold(sent: int) -> None:
        seen.append((sent, await count_on_broker()))
        await asyncio.sleep(0.05)

    sent = asyncio.run(publish_stream(settings, iter(records), rate=0, hold=hold, hold_every=100))
    assert sent == 250
    assert [s for s, _ in seen] == [100, 200]
    assert all(on_broker >= s for s, on_broker in seen), seen  # acknowledged before the hold
    assert asyncio.run(count_on_broker()) == 250
