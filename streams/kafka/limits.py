"""The record-size limits of producer, broker and topics, checked before a worker starts.

A record the producer may build but the broker refuses is lost where nobody awaits its send
(issue 21: a 1.03 MiB profile changelog record, producer allowing 4 MiB, broker 1 MiB). So the
worker's producer is given ``TOUCHPOINT_MAX_RECORD_BYTES`` as its ``max_request_size`` (aiokafka
refuses a larger record at ``send()``, synchronously, where the caller sees it) and the worker
refuses to start when the broker (``message.max.bytes``) or one of the project's existing topics
(``max.message.bytes``, which overrides the broker's per topic) accepts less.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka.client import admin_client
from streams.settings import Settings, SettingsError

__all__ = ["check_record_limits", "record_limit_problem"]

BROKER_LIMIT = "message.max.bytes"
TOPIC_LIMIT = "max.message.bytes"


def record_limit_problem(producer_max: int, broker: Mapping[str, int], topics: Mapping[str, int]) -> str | None:
    """One line naming the first limit below the producer's, or None when every limit allows it.

    >>> record_limit_problem(1_000_000, {"1": 1048588}, {"tp.touchpoints": 1048588}) is None
    True
    >>> record_limit_problem(4_194_304, {"1": 1048588}, {})
    'the producer may send records of up to 4194304 bytes (TOUCHPOINT_MAX_RECORD_BYTES) but broker 1 accepts 1048588 (message.max.bytes); lower TOUCHPOINT_MAX_RECORD_BYTES or raise the limit'
    """
    for kind, limits, name in (("broker", broker, BROKER_LIMIT), ("topic", topics, TOPIC_LIMIT)):
        for resource, limit in sorted(limits.items()):
            if limit < producer_max:
                return (f"the producer may send records of up to {producer_max} bytes (TOUCHPOINT_MAX_RECORD_BYTES) but {kind}"
                        f" {resource} accepts {limit} ({name}); lower TOUCHPOINT_MAX_RECORD_BYTES or raise the limit")
    return None


async def _limits(settings: Settings, timeout_s: float) -> tuple[dict[str, int], dict[str, int]]:
    admin = admin_client(settings, request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        ours = sorted(t for t in await admin.list_topics() if t.startswith(settings.namespace + "."))
        brokers = [str(b.nodeId) for b in admin._client.cluster.brokers()]  # noqa: SLF001 - the admin's own metadata
        resources = [ConfigResource(ConfigResourceType.BROKER, b, {BROKER_LIMIT: None}) for b in brokers]
        resources += [ConfigResource(ConfigResourceType.TOPIC, t, {TOPIC_LIMIT: None}) for t in ours]
        broker: dict[str, int] = {}
        topics: dict[str, int] = {}
        for response in await admin.describe_configs(resources):
            for error, _, kind, name, entries in response.resources:
                if error:
                    continue
                for entry in entries:
                    if entry[0] in (BROKER_LIMIT, TOPIC_LIMIT) and entry[1] is not None:
                        (broker if kind == ConfigResourceType.BROKER else topics)[name] = int(entry[1])
        return broker, topics
    finally:
        await admin.close()


async def check_record_limits(settings: Settings, timeout_s: float = 30.0) -> None:
    """Raise :class:`SettingsError` (one line; the CLI exits 2) when Kafka would refuse records
    the worker's producer may build."""
    broker, topics = await _limits(settings, timeout_s)
    problem = record_limit_problem(settings.max_record_bytes, broker, topics)
    if problem is not None:
        raise SettingsError(problem)
