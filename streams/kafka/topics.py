"""The project's topics, their configuration, and creating them idempotently."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.kafka.client import admin_client
from streams.settings import Settings, SettingsError

__all__ = ["TopicSpec", "TOPICS", "ensure_topics", "INPUT", "DLQ", "IDENTITY_CHANGES", "IDENTITY_KEYS", "PROFILE_EVENTS", "DEMAND_COUNTS", "ALERTS",
           "PROFILE_UPDATES", "AUDIENCES", "DESTINATIONS_DLQ"]

log = logging.getLogger(__name__)

INPUT = "touchpoints"
DLQ = "touchpoints.dlq"
IDENTITY_CHANGES = "identity.changes"
IDENTITY_KEYS = "identity.keys"        # data keys of the identifiers sealed in identity.changes (streams/identity/sealing.py)
PROFILE_EVENTS = "profile-events"
DEMAND_COUNTS = "demand-counts"
ALERTS = "alerts"
PROFILE_UPDATES = "profile-updates"    # streams/activation (public, schemas/profile-update.v1.json)
AUDIENCES = "audiences"                # streams/activation (public, schemas/audience-change.v1.json)
DESTINATIONS_DLQ = "destinations.dlq"  # streams/activation/destinations.py: deliveries that failed after retries

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    doc: str
    config: dict[str, str] = field(default_factory=dict)
    consumed: bool = False  # read by the worker group (wait-idle checks its lag)


TOPICS = (
    TopicSpec(INPUT, "raw touchpoint events from upstream apps (any key)", {"retention.ms": str(7 * _DAY_MS)}, consumed=True),
    TopicSpec(DLQ, "rejected records: original bytes (sealed) + reason headers", {"retention.ms": str(30 * _DAY_MS)}),
    # The identity graph in Redis is a view of this log; keep it forever so Redis can be rebuilt.
    TopicSpec(IDENTITY_CHANGES, "identity audit trail: created/linked/merged/blocked/quarantined/erased", {"retention.ms": "-1"}),
    # Compacted: the current data key per identifier digest; an erasure's tombstone removes it (crypto-shredding).
    # max.compaction.lag.ms bounds how long the shredded key's old record may stay on disk (the active
    # segment is rolled for it); delete.retention.ms how long the tombstone itself is kept.
    TopicSpec(IDENTITY_KEYS, "data keys of the identifiers sealed in identity.changes (tombstone = erased)",
              {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "max.compaction.lag.ms": str(_DAY_MS),
               "delete.retention.ms": str(_DAY_MS), "segment.ms": str(_DAY_MS)}),
    TopicSpec(PROFILE_EVENTS, "normalised, resolved events and merge/absorb/erase controls keyed by profile id", {"retention.ms": str(7 * _DAY_MS)}, consumed=True),
    TopicSpec(DEMAND_COUNTS, "partial demand counts per dimension key and event-time bucket", {"retention.ms": str(7 * _DAY_MS)}, consumed=True),
    TopicSpec(ALERTS, "demand-shift alert lifecycle records", {"retention.ms": str(90 * _DAY_MS)}),
    TopicSpec(PROFILE_UPDATES, "public: the current profile per profile id, redirects of merged ids, tombstones of erased ones",
              {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", "delete.retention.ms": str(_DAY_MS),
               # an erased profile's old values are compacted away within a day (the segment is rolled for it)
               "max.compaction.lag.ms": str(_DAY_MS)}),
    # Consumed by the destinations forwarder (its own group, not the worker group: not "consumed" here).
    TopicSpec(AUDIENCES, "public: audience entries and exits keyed by profile id", {"retention.ms": "-1"}),
    TopicSpec(DESTINATIONS_DLQ, "destination deliveries that failed after retries (touchpoint destinations redrive)", {"retention.ms": str(30 * _DAY_MS)}),
)


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create any missing project topic; return the names created. Safe to call concurrently."""
    admin = admin_client(settings, request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        await _check_partitions(admin, settings, [settings.topic(t.name) for t in TOPICS if settings.topic(t.name) in existing])
        wanted = [
            NewTopic(settings.topic(t.name), num_partitions=settings.partitions,
                     replication_factor=settings.replication_factor, topic_configs=dict(t.config))
            for t in TOPICS if settings.topic(t.name) not in existing
        ]
        if not wanted:
            return []
        created: list[str] = []
        for topic in wanted:  # one by one: a racing creator only makes its own topic fail
            try:
                await admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        log.info("created topics %s", created)
        return created
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings, names: list[str]) -> None:
    """Existing topics must have ``settings.partitions`` partitions: tables are co-partitioned
    with their source, and ingest bundles profile-events per partition by the same count."""
    if not names:
        return
    wrong = []
    for meta in await admin.describe_topics(names):
        count = len(meta.get("partitions") or [])
        if meta.get("error_code", 0) == 0 and count != settings.partitions:
            wrong.append(f"{meta['topic']} has {count}")
    if wrong:
        raise SettingsError(f"partition count mismatch: {', '.join(wrong)}, but TOUCHPOINT_PARTITIONS={settings.partitions}; "
                            "use the topics' count, or a new namespace (TOUCHPOINT_NAMESPACE)")


async def group_offsets(admin: AIOKafkaAdminClient, group: str, timeout_s: float = 30.0) -> dict[Any, Any]:
    """Committed offsets of a group, waiting (bounded) while a fresh broker elects its coordinator."""
    from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return dict(await admin.list_consumer_group_offsets(group))
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorForGroupError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.25)


def describe_topics() -> list[dict[str, Any]]:
    return [{"name": t.name, "doc": t.doc, **t.config} for t in TOPICS]
