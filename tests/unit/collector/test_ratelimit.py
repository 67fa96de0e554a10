import pytest

from streams.collector.ratelimit import RateLimiter


def test_burst_then_refill_at_the_rate():
    limiter = RateLimiter(rate_per_s=10, burst=5)
    assert all(limiter.take("k", 1, now=0.0).allowed for _ in range(5))
    denied = limiter.take("k", 1, now=0.0)
    assert not denied.allowed and denied.retry_after_s == pytest.approx(0.1)
    assert denied.retry_after_header == "1"
    assert limiter.take("k", 1, now=0.1).allowed
    assert not limiter.take("k", 1, now=0.1).allowed


def test_keys_are_independent():
    limiter = RateLimiter(rate_per_s=1, burst=2)
    assert limiter.take("a", 2, now=0.0).allowed
    assert not limiter.take("a", 1, now=0.0).allowed
    assert limiter.take("b", 2, now=0.0).allowed


def test_refill_is_capped_at_the_burst():
    limiter = RateLimiter(rate_per_s=100, burst=10)
    limiter.take("k", 10, now=0.0)
    limiter.take("k", 0, now=1000.0)
    assert limiter.tokens("k") == 10
    assert limiter.take("k", 10, now=1000.0).allowed and not limiter.take("k", 1, now=1000.0).allowed


def test_a_batch_dearer_than_the_bucket_waits_for_a_full_bucket_not_forever():
    limiter = RateLimiter(rate_per_s=10, burst=10)
    assert limiter.take("k", 500, now=0.0).allowed  # charged as a full bucket
    denied = limiter.take("k", 500, now=0.0)
    assert not denied.allowed and denied.retry_after_s == pytest.approx(1.0)
    assert limiter.take("k", 500, now=1.0).allowed


def test_a_clock_stepping_back_mints_no_tokens():
    limiter = RateLimiter(rate_per_s=10, burst=10)
    limiter.take("k", 10, now=100.0)
    assert not limiter.take("k", 1, now=50.0).allowed
    assert not limiter.take("k", 1, now=100.0).allowed


def test_retry_after_is_whole_seconds_rounded_up():
    limiter = RateLimiter(rate_per_s=2, burst=2)
    limiter.take("k", 2, now=0.0)
    denied = limiter.take("k", 2, now=0.0)
    assert denied.retry_after_s == pytest.approx(1.0) and denied.retry_after_header == "1"
    limiter2 = RateLimiter(rate_per_s=0.4, burst=1)
    limiter2.take("k", 1, now=0.0)
    assert limiter2.take("k", 1, now=0.0).retry_after_header == "3"  # 2.5 s


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        RateLimiter(rate_per_s=0, burst=1)
