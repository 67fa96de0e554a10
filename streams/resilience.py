"""Waiting out an unavailable dependency: capped exponential backoff, visible in logs and metrics.

Valid events are never dead-lettered because Redis or Kafka is slow or gone; the agent waits
and then catches up (issue: back-pressure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import Counter

__all__ = ["retry_until_ok", "TRANSIENT"]

log = logging.getLogger(__name__)
T = TypeVar("T")

try:  # errors that mean "the dependency is unavailable", not "the event is bad"
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError, RequestTimedOutError
    from redis.exceptions import BusyLoadingError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    TRANSIENT: tuple[type[BaseException], ...] = (
        RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError, asyncio.TimeoutError,
        KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError, RequestTimedOutError,
    )
except ImportError:  # pragma: no cover
    TRANSIENT = (OSError, asyncio.TimeoutError)


async def retry_until_ok(
    call: Callable[[], Awaitable[T]],
    dependency: str,
    retries: Counter | None = None,
    first_delay_s: float = 0.05,
    max_delay_s: float = 5.0,
) -> T:
    """Run ``call`` until it succeeds; transient errors are retried with capped backoff."""
    delay = first_delay_s
    attempt = 0
    while True:
        try:
            return await call()
        except TRANSIENT as exc:
            attempt += 1
            if retries is not None:
                retries.inc()
            if attempt == 1 or attempt % 20 == 0:
                log.warning("%s unavailable (%s: %s); waiting, attempt %d", dependency, type(exc).__name__, exc, attempt)
            await asyncio.sleep(delay)
            delay = min(max_delay_s, delay * 2)
