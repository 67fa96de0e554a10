"""Token-bucket rate limiting per write key; pure (the caller passes the time)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Decision", "RateLimiter"]


@dataclass(frozen=True)
class Decision:
    """The answer to one request: allowed, or how long to wait before trying again."""

    allowed: bool
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for HTTP ``Retry-After`` (rounded up, at least 1)."""
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """One token bucket per key: ``rate_per_s`` tokens refill per second, up to ``burst``.

    A request costs one token per event. A request dearer than the whole bucket is charged as a
    full bucket, so a large batch is slowed down but never refused forever.

    >>> limiter = RateLimiter(rate_per_s=10, burst=20)
    >>> limiter.take("k", 20, now=0.0).allowed, limiter.take("k", 5, now=0.0).allowed
    (True, False)
    >>> limiter.take("k", 5, now=0.5).allowed
    True
    """

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be positive")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        # Keys are authenticated write keys, a small fixed set (without auth the collector uses one
        # shared key), so this cannot grow without bound.
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: float, now: float) -> Decision:
        """Charge ``cost`` tokens to ``key`` at monotonic time ``now`` if it has them."""
        cost = min(max(float(cost), 0.0), self.burst)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elif now > bucket.updated:  # a clock that steps back must not mint tokens
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return Decision(True)
        return Decision(False, (cost - bucket.tokens) / self.rate_per_s)

    def tokens(self, key: str) -> float:
        """Tokens left for ``key`` as of its last request (full for an unseen key)."""
        bucket = self._buckets.get(key)
        return self.burst if bucket is None else bucket.tokens
