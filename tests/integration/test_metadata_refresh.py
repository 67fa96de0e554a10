"""How long a Kafka client can wait for metadata that aiokafka forgot to fetch, on a real broker.

aiokafka 0.14's metadata synchronizer, when the tracked topic list is replaced (``set_topics``)
while a *timed* refresh is in flight, loops back to wait for a wake-up that never comes: every
forced refresh asked for meanwhile (a group coordinator lookup after a broker restart, for one)
waits for the next timed refresh, ``metadata_max_age_ms`` later (aiokafka's default: 300 s).
Our clients, and the worker's Faust consumer and producer, take that age from
TOUCHPOINT_KAFKA_METADATA_MAX_AGE_S (15 s), which bounds the wait (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.client import AIOKafkaClient

from streams.app import create_app
from streams.kafka.client import client_options
from tests.fixtures.stack import run

pytestmark = pytest.mark.integration


def test_a_refresh_lost_during_a_timed_one_waits_at_most_the_configured_max_age(settings) -> None:
    max_age_s = 1.5
    s = settings.with_(kafka_metadata_max_age_s=max_age_s)

    async def scenario() -> tuple[float, float]:
        client = AIOKafkaClient(**client_options(s))
        await client.bootstrap()
        try:
            timed = client._metadata_update
            lost: asyncio.Future = asyncio.get_running_loop().create_future()

            async def timed_refresh(cluster, topics):  # the synchronizer's own (timed) refresh
                if not lost.done():  # the topic list is replaced while it is in flight
                    lost.set_result((time.monotonic(), client.set_topics([s.topic("touchpoints")])))
                return await timed(cluster, topics)

            client._metadata_update = timed_refresh
            asked_at, answer = await asyncio.wait_for(lost, max_age_s + 5)
            await asyncio.wait_for(answer, max_age_s + 5)  # aiokafka's default age would wait 300 s
            waited = time.monotonic() - asked_at
            # and a refresh asked for afterwards is served at once again
            t0 = time.monotonic()
            await asyncio.wait_for(client.force_metadata_update(), 5)
            return waited, time.monotonic() - t0
        finally:
            await client.close()

    waited, next_one = run(scenario())
    print(f"\n[metadata] a refresh lost by aiokafka was served after {waited:.2f} s (max age {max_age_s} s); the next in {next_one:.3f} s")
    # Bounds loose enough for a loaded 2-core machine, tight enough to tell 1.5 s from 300 s.
    assert waited <= max_age_s + 3.0
    assert next_one < 3.0


def test_the_worker_consumer_and_producer_use_the_same_max_age(settings) -> None:
    app, _ = create_app(settings.with_(kafka_metadata_max_age_s=7.0))
    assert app.conf.consumer_metadata_max_age_ms == 7000 and app.conf.producer_metadata_max_age_ms == 7000
