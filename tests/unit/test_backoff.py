"""The one backoff helper: retries what the caller calls transient, counts and waits, and lets
everything else through."""

from __future__ import annotations

import asyncio

import pytest

from streams.backoff import retry_until_ok


class Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


async def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionResetError("down")
        return "ok"

    retries, seen = Counter(), []
    got = await retry_until_ok(flaky, "dep", retries, first_delay_s=0.001, max_delay_s=0.002, on_retry=seen.append)
    assert got == "ok" and len(attempts) == 4 and retries.value == 3
    assert [type(e) for e in seen] == [ConnectionResetError] * 3


async def test_other_errors_propagate_at_once() -> None:
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bad event is not an outage")

    with pytest.raises(ValueError):
        await retry_until_ok(bad, "dep", first_delay_s=0.001)
    assert calls == 1


async def test_the_caller_names_what_is_transient() -> None:
    class Unavailable(Exception):
        pass

    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable()
        return calls

    assert await retry_until_ok(call, "dep", transient=(Unavailable,), first_delay_s=0.001) == 2
    with pytest.raises(asyncio.TimeoutError):  # not transient when the caller says so
        await retry_until_ok(_timeout, "dep", transient=(Unavailable,), first_delay_s=0.001)


async def _timeout() -> None:
    raise TimeoutError()
