"""The one place aiokafka clients are built from settings (PLAINTEXT, SSL, SASL), and Faust's
broker credentials. Everything that reads offsets or topics outside Faust (lag, on-call feed,
ordered sources, CLI, bench) asks :func:`admin_client` / :func:`reader` / :func:`producer`
(or :func:`admin_and_reader` for the usual pair), and a consumer group member
(:func:`group_consumer`) instead of building its own."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from streams.settings import Settings

__all__ = ["client_options", "metadata_max_age_ms", "ssl_context", "faust_credentials", "admin_client", "reader", "group_consumer", "producer", "admin_and_reader"]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if "SSL" not in settings.kafka_security_protocol:
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=settings.kafka_ssl_cafile or None)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by every aiokafka client we build."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        # aiokafka 0.14 can leave a forced metadata refresh to the next timed one (docs/reliability.md):
        # this bounds how long, e.g., a group coordinator lookup after a broker restart waits.
        "metadata_max_age_ms": metadata_max_age_ms(settings),
    }
    ctx = ssl_context(settings)
    if ctx is not None:
        opts["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        opts.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                    sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password)
    return opts


def metadata_max_age_ms(settings: Settings) -> int:
    return max(1, round(settings.kafka_metadata_max_age_s * 1000))


def faust_credentials(settings: Settings) -> Any:
    """Faust's credentials object for the broker, or None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings),
    )


def admin_client(settings: Settings, **extra: Any) -> Any:
    """An (unstarted) admin client."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**client_options(settings), **extra)


def reader(settings: Settings, **extra: Any) -> Any:
    """An (unstarted) consumer of no group that never commits: for reading topics and offsets."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**{**client_options(settings), "enable_auto_commit": False, "group_id": None, **extra})


def group_consumer(settings: Settings, *topics: str, group_id: str, **extra: Any) -> Any:
    """An (unstarted) member of consumer group ``group_id`` that commits only when told to, reading
    a new group from the earliest offset (nothing published before it joined is skipped)."""
    from aiokafka import AIOKafkaConsumer

    options = {**client_options(settings), "enable_auto_commit": False, "auto_offset_reset": "earliest", **extra}
    return AIOKafkaConsumer(*topics, group_id=group_id, **options)


def producer(settings: Settings, **extra: Any) -> Any:
    """An (unstarted) producer that waits for every in-sync replica and never duplicates on retry."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**{**client_options(settings), "acks": "all", "enable_idempotence": True, **extra})


@asynccontextmanager
async def admin_and_reader(settings: Settings, **reader_extra: Any) -> AsyncIterator[tuple[Any, Any]]:
    """A started admin client and :func:`reader`, both closed on exit."""
    admin, consumer = admin_client(settings), reader(settings, **reader_extra)
    await asyncio.gather(admin.start(), consumer.start())
    try:
        yield admin, consumer
    finally:
        await asyncio.gather(admin.close(), consumer.stop(), return_exceptions=True)
