"""Faust's aiokafka transport with a cheaper hand-over of fetched records to the agents.

Faust 0.15.3's consumer passes every fetched record to the conductor (which decodes it and puts
it on the agents' stream queues) inside ``Service.wait_first(callback(message),
suspend_flow.wait())``, so that a rebalance can abandon a hand-over blocked on a full queue.
That costs four futures and an ``asyncio.wait`` per record: ~12% of a worker's CPU in py-spy
(docs/performance.md, session 4), the largest single cost left on the input path.

:class:`DirectDeliveryConsumer` awaits the callback directly while the flow is running (flow
control active, no suspension asked), which is when the hand-over is a few non-blocking calls;
when a queue is full it waits for the agent, as Faust does. While the flow is being stopped or
suspended it falls back to Faust's ``wait_first`` hand-over, so rebalances behave as before.
Offsets are tracked exactly as Faust does (read offset per partition, gaps of acking topics,
``broker_commit_every``). Our agents' sources are additionally guarded by
:class:`~streams.kafka.ordered.OffsetGuard`, which catches any record a hand-over drops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["DirectDeliveryConsumer", "DirectDeliveryTransport", "PINNED", "SeekOnConsumerThread", "aiokafka_producer",
           "check_pinned_versions", "plain_commit", "run_on_loop", "tables_recovered"]

# This module is the one place that leans on private Faust/aiokafka internals (the consumer's fetch
# loop and offset bookkeeping below, the driver's plain commit in plain_commit). They are only
# known to hold for these releases (pyproject.toml pins the same), so a worker refuses to start on
# any other (streams/cli/worker.py).
PINNED: Mapping[str, str] = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


def check_pinned_versions(installed: Callable[[str], str] = metadata.version) -> list[str]:
    """What differs from :data:`PINNED` ("faust-streaming 0.16.0 installed, 0.15.3 pinned"); empty when all match."""
    problems = []
    for dist, pinned in PINNED.items():
        try:
            have = installed(dist)
        except metadata.PackageNotFoundError:
            problems.append(f"{dist} not installed, {pinned} pinned")
            continue
        if have != pinned:
            problems.append(f"{dist} {have} installed, {pinned} pinned")
    return problems


async def plain_commit(app: Any, offsets: Mapping[Any, int]) -> bool:
    """Commit ``offsets`` through the driver's plain commit (no Faust bookkeeping of acked
    offsets: our ordered sources decide what is done, streams/kafka/ordering.py)."""
    return bool(await app.consumer._commit(offsets))  # noqa: SLF001 - private, pinned versions only


def aiokafka_producer(app: Any) -> Any:
    """The worker's started aiokafka producer under Faust's (``create_batch``/``send_batch``,
    which Faust's producer does not offer: streams/kafka/batches.py). One producer for every
    send of the worker, so one ``flush`` before a commit covers batches and single sends alike."""
    return app.producer._ensure_producer()  # noqa: SLF001 - private, pinned versions only


def tables_recovered(app: Any) -> bool:
    """Whether the worker's tables finished recovering from their changelogs (not in Faust's
    typed interface: the table manager's recovery service)."""
    return bool(app.tables.recovery.completed.is_set())

log = logging.getLogger(__name__)

YIELD_EVERY = 100  # records handed over between explicit yields to the event loop (Faust's value)


SEEK_TIMEOUT_S = 30.0  # a seek is a few dict operations; this only bounds a wedged consumer thread


def run_on_loop(loop: asyncio.AbstractEventLoop | None, call: Callable[[], Any], timeout_s: float = SEEK_TIMEOUT_S) -> Any:
    """Run the synchronous ``call`` on ``loop``'s thread and wait for it; directly when already on
    that loop or when the loop is not running (before start, after stop).

    A wedged loop raises ``TimeoutError``: the worker stops and a restart resumes from the committed
    offsets, which is safer than touching that loop's state from another thread.
    """
    if loop is None or loop.is_closed() or not loop.is_running():
        return call()
    try:
        on_that_loop = asyncio.get_running_loop() is loop
    except RuntimeError:
        on_that_loop = False
    if on_that_loop:
        return call()
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as is
            done.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return done.result(timeout=timeout_s)


class SeekOnConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread whose ``seek`` runs on the consumer's own thread.

    Faust 0.15.3 calls ``seek`` synchronously from the worker's main thread (committed offsets at
    assignment, table recovery), and aiokafka's ``Fetcher.seek_to`` then deletes the partition's
    prefetched records while the consumer thread may be iterating them in ``fetched_records``: the
    worker crashed with ``KeyError: TopicPartition(...)`` in a kill -9 test (a known race:
    robinhood/aiokafka#19). Running the seek on the consumer's loop removes the interleaving.
    """

    def seek(self, partition: Any, offset: int) -> None:
        consumer = self._ensure_consumer()
        run_on_loop(self.thread_loop, lambda: consumer.seek(partition, offset))


class DirectDeliveryConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop awaits the hand-over directly (see module doc)."""

    def _new_consumer_thread(self) -> SeekOnConsumerThread:
        return SeekOnConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        flow_control = self.app.flow_control
        suspend_flow = self.suspend_flow
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0

        def stopping() -> bool:
            return self._stopped.is_set() or fetcher._stopped.is_set()  # noqa: SLF001 - Faust's own stop test

        try:
            while not stopping():
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await asyncio.sleep(0)  # getmany may return at once, many times: let other tasks run
                if self.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # fetched again after a seek: already handed over (Faust drops it too)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if flow_control.is_active() and not suspend_flow.is_set():
                        await callback(message)
                    else:
                        await self.wait_first(callback(message), suspend_flow.wait())
                    read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer; shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class DirectDeliveryTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, building :class:`DirectDeliveryConsumer` consumers."""

    Consumer = DirectDeliveryConsumer
