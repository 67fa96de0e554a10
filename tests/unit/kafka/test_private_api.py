"""The one module with private Faust/aiokafka API use (streams/kafka/delivery.py): the pinned
versions are checked at start, and the plain commit goes where it should. Against fakes: the
crash and rebalance tests in tests/system cover the real consumer."""

from __future__ import annotations

from importlib import metadata

import pytest

from streams.kafka.delivery import PINNED, check_pinned_versions, plain_commit


def test_the_installed_versions_are_the_pinned_ones() -> None:
    assert check_pinned_versions() == []


def test_another_version_is_named() -> None:
    def installed(dist: str) -> str:
        if dist == "faust-streaming":
            return "0.16.0"
        if dist == "aiokafka":
            raise metadata.PackageNotFoundError(dist)
        return PINNED[dist]

    assert check_pinned_versions(installed) == ["faust-streaming 0.16.0 installed, 0.15.3 pinned", "aiokafka not installed, 0.14.0 pinned"]


def test_the_pins_match_pyproject() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    for dist, version in PINNED.items():
        assert f'"{dist}=={version}"' in text


class _Consumer:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.seen: list[dict] = []

    async def _commit(self, offsets: dict) -> bool:
        self.seen.append(dict(offsets))
        return self.answer


class _App:
    def __init__(self, answer: bool) -> None:
        self.consumer = _Consumer(answer)


@pytest.mark.parametrize("answer", [True, False])
async def test_plain_commit_hands_the_offsets_to_the_driver(answer: bool) -> None:
    app = _App(answer)
    assert await plain_commit(app, {("t", 0): 5}) is answer
    assert app.consumer.seen == [{("t", 0): 5}]


# -- seek on the consumer's own thread (the fetcher race of robinhood/aiokafka#19) -----------------

import asyncio  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from streams.kafka.delivery import DirectDeliveryConsumer, SeekOnConsumerThread, run_on_loop  # noqa: E402


@pytest.fixture
def thread_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, like Faust's consumer thread."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    deadline = time.monotonic() + 5
    while not loop.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    runner.join(5)
    loop.close()


def test_a_call_from_another_thread_runs_on_the_loops_thread(thread_loop: asyncio.AbstractEventLoop) -> None:
    seen: list[int] = []
    assert run_on_loop(thread_loop, lambda: seen.append(threading.get_ident()) or "done") == "done"
    assert seen and seen[0] != threading.get_ident()


def test_the_calls_exception_reaches_the_caller(thread_loop: asyncio.AbstractEventLoop) -> None:
    def fails() -> None:
        raise AssertionError("partition not assigned")

    with pytest.raises(AssertionError, match="not assigned"):
        run_on_loop(thread_loop, fails)


def test_a_loop_that_is_not_running_is_called_directly() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert run_on_loop(loop, threading.get_ident) == threading.get_ident()
    finally:
        loop.close()
    assert run_on_loop(None, lambda: 7) == 7


def test_a_wedged_loop_times_out_instead_of_racing(thread_loop: asyncio.AbstractEventLoop) -> None:
    release = threading.Event()
    thread_loop.call_soon_threadsafe(release.wait, 5)  # the loop's thread is blocked
    ran: list[bool] = []
    try:
        with pytest.raises(TimeoutError):
            run_on_loop(thread_loop, lambda: ran.append(True), timeout_s=0.2)
    finally:
        release.set()
    assert ran in ([], [True])  # may run once the loop is free again, never on this thread


class _SeekRecorder:
    def __init__(self) -> None:
        self.seeks: list[tuple[object, int, int]] = []

    def seek(self, partition: object, offset: int) -> None:
        self.seeks.append((partition, offset, threading.get_ident()))


def test_the_consumer_threads_seek_runs_on_its_own_loop(thread_loop: asyncio.AbstractEventLoop) -> None:
    consumer = _SeekRecorder()
    thread = object.__new__(SeekOnConsumerThread)  # no Faust app needed for the seek path
    thread.thread_loop = thread_loop
    thread._ensure_consumer = lambda: consumer  # type: ignore[method-assign]
    thread.seek(("profile-events", 3), 42)
    assert [(p, o) for p, o, _ in consumer.seeks] == [(("profile-events", 3), 42)]
    assert consumer.seeks[0][2] != threading.get_ident()


def test_the_workers_consumer_builds_that_thread() -> None:
    import types

    import faust

    app = faust.App("t-seek", broker="kafka://127.0.0.1:9")  # never connects: only its settings are read
    consumer = types.SimpleNamespace(loop=asyncio.new_event_loop(), beacon=None, app=app,
                                     transport=types.SimpleNamespace(app=app),
                                     RebalanceListener=DirectDeliveryConsumer.RebalanceListener)
    thread = DirectDeliveryConsumer._new_consumer_thread(consumer)  # type: ignore[arg-type]
    try:
        assert type(thread) is SeekOnConsumerThread
    finally:
        thread.thread_loop.close()
        consumer.loop.close()
