"""Which errors of the real clients mean "the dependency is unavailable", not "the event is bad".

The backoff itself is :mod:`streams.backoff` (pure); this adapter only names the Redis and
aiokafka exceptions, and :func:`retry_until_ok` is the backoff with them (issue: back-pressure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError, RequestTimedOutError
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams import backoff

__all__ = ["retry_until_ok", "TRANSIENT"]

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError, asyncio.TimeoutError,
    KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError, RequestTimedOutError,
)


async def retry_until_ok(
    call: Callable[[], Awaitable[T]],
    dependency: str,
    retries: backoff.Counts | None = None,
    first_delay_s: float = 0.05,
    max_delay_s: float = 5.0,
) -> T:
    """:func:`streams.backoff.retry_until_ok` with the Redis and Kafka client errors as transient."""
    return await backoff.retry_until_ok(call, dependency, retries, transient=TRANSIENT,
                                        first_delay_s=first_delay_s, max_delay_s=max_delay_s)
