"""The one way this project waits out an unavailable dependency: capped exponential backoff.

Pure (no client library): which exceptions mean "unavailable" is the caller's to say, so the
core stages stay free of Redis and Kafka imports; :mod:`streams.resilience` names them for the
real clients. Valid events are never dead-lettered because a dependency is slow or gone; the
caller waits, then catches up.

>>> from itertools import islice
>>> list(islice(delays(0.05, 0.3), 5))
[0.05, 0.1, 0.2, 0.3, 0.3]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

__all__ = ["delays", "retry_until_ok", "Counts", "BASIC_TRANSIENT"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Without a client library in sight, these are the errors that mean "try again later".
BASIC_TRANSIENT: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)


class Counts(Protocol):
    """Anything with ``inc()``: a Prometheus counter child, a test double."""

    def inc(self, amount: float = 1) -> None: ...


def delays(first_s: float, max_s: float) -> Iterator[float]:
    """``first_s``, doubling, capped at ``max_s``, forever."""
    delay = first_s
    while True:
        yield delay
        delay = min(max_s, delay * 2)


async def retry_until_ok(
    call: Callable[[], Awaitable[T]],
    dependency: str,
    retries: Counts | None = None,
    *,
    transient: tuple[type[BaseException], ...] = BASIC_TRANSIENT,
    first_delay_s: float = 0.05,
    max_delay_s: float = 5.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run ``call`` until it succeeds; ``transient`` errors are retried with capped backoff,
    counted on ``retries``, logged on the first attempt and every 20th; others propagate."""
    attempt = 0
    for delay in delays(first_delay_s, max_delay_s):
        try:
            return await call()
        except transient as exc:
            attempt += 1
            if retries is not None:
                retries.inc()
            if on_retry is not None:
                on_retry(exc)
            if attempt == 1 or attempt % 20 == 0:
                log.warning("%s unavailable (%s: %s); waiting %.2fs, attempt %d", dependency, type(exc).__name__, exc, delay, attempt)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - delays() never ends
