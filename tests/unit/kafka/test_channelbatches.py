"""The demand agent's batches from its Faust channel (streams/kafka/channelbatches.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from streams.kafka.channelbatches import by_partition, next_batch


@dataclass
class Msg:
    partition: int
    offset: int


@dataclass
class Ev:
    message: Msg


class Chan:
    """A Faust channel as the agent sees it: ``get`` waits, ``queue`` holds what arrived."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Ev] = asyncio.Queue()

    async def get(self, *, timeout: object = None) -> Ev:
        return await self.queue.get()


def test_waits_for_the_first_record_then_takes_only_what_is_queued() -> None:
    async def scenario() -> tuple[list[Msg], list[Msg], int]:
        chan = Chan()
        waiting = asyncio.ensure_future(next_batch(chan, 10))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing queued: it waits
        chan.queue.put_nowait(Ev(Msg(0, 1)))
        first = await asyncio.wait_for(waiting, 1)
        for offset in range(2, 6):
            chan.queue.put_nowait(Ev(Msg(0, offset)))
        capped = await next_batch(chan, 3)  # at most max_records, the rest stays queued
        return first, capped, chan.queue.qsize()

    first, capped, left = asyncio.run(scenario())
    assert first == [Msg(0, 1)]
    assert capped == [Msg(0, 2), Msg(0, 3), Msg(0, 4)]
    assert left == 1


def test_runs_keep_each_partitions_order() -> None:
    messages = [Msg(2, 10), Msg(0, 3), Msg(2, 11), Msg(0, 4), Msg(1, 7), Msg(2, 12)]
    runs = by_partition(messages)
    assert list(runs) == [2, 0, 1]
    assert [m.offset for m in runs[2]] == [10, 11, 12]
    assert [m.offset for m in runs[0]] == [3, 4]
    assert sum(len(r) for r in runs.values()) == len(messages)


def test_an_ended_channel_gives_an_empty_batch() -> None:
    class Ended(Chan):
        async def get(self, *, timeout: object = None) -> Ev:
            raise StopAsyncIteration  # what Faust throws into an agent's channel when it stops

    assert asyncio.run(next_batch(Ended(), 10)) == []
