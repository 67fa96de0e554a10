"""A Faust agent's source records taken in batches, without the stream's per-record machinery.

Faust's consumer and conductor still fetch, decode and queue every record of the agent's topic
(so the topic stays subscribed, its partitions stay co-partitioned with the agent's tables and
Faust's rebalances, recovery and flow control are unchanged). What the agent no longer pays is
the ``Stream`` iterator per record (current event, sensors, processors, the generator of
``stream.events()``): ~3% of the worker's CPU for demand-counts in py-spy (docs/performance.md,
"Session 8"). The agent takes what is queued at once (:func:`next_batch`), splits it per
partition in order (:func:`by_partition`) and admits each run through its in-order guard.

Only ``ChannelT.get`` and ``ChannelT.queue`` (``empty``/``get_nowait``) are used: Faust's public
channel interface, the same calls its stream iterator makes.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["next_batch", "by_partition"]


class _Queue(Protocol):
    def empty(self) -> bool: ...
    def get_nowait(self) -> Any: ...


class Channel(Protocol):
    """What :func:`next_batch` needs of a Faust channel (``stream.channel`` of an agent)."""

    @property
    def queue(self) -> _Queue: ...

    async def get(self, *, timeout: Any = None) -> Any: ...


async def next_batch(channel: Channel, max_records: int) -> list[Any]:
    """Wait for the next event, then take the events already queued (no wait), ``max_records``
    at most; returns their messages in the order Faust queued them (in order per partition), or
    an empty list once the channel has ended (the agent is stopping: it returns, as ``async for`` would).

    >>> import asyncio
    >>> class Ev:
    ...     def __init__(self, m): self.message = m
    >>> class Q:
    ...     def __init__(self, items): self.items = items
    ...     def empty(self): return not self.items
    ...     def get_nowait(self): return self.items.pop(0)
    >>> class Chan:
    ...     def __init__(self, items): self.queue = Q([Ev(i) for i in items])
    ...     async def get(self, *, timeout=None): return self.queue.get_nowait()
    >>> asyncio.run(next_batch(Chan([1, 2, 3]), 2))
    [1, 2]
    """
    try:
        events = [await channel.get()]
    except StopAsyncIteration:  # Faust ends the channel this way when the agent stops
        return []
    queue = channel.queue
    while len(events) < max_records and not queue.empty():
        events.append(queue.get_nowait())
    return [event.message for event in events]


def by_partition(messages: list[Any]) -> dict[int, list[Any]]:
    """The messages per partition, each partition's in the order given (first partition seen first).

    >>> class M:
    ...     def __init__(self, p, o): self.partition, self.offset = p, o
    ...     def __repr__(self): return f"{self.partition}/{self.offset}"
    >>> by_partition([M(1, 5), M(0, 7), M(1, 6)])
    {1: [1/5, 1/6], 0: [0/7]}
    """
    runs: dict[int, list[Any]] = {}
    for message in messages:
        run = runs.get(message.partition)
        if run is None:
            run = runs[message.partition] = []
        run.append(message)
    return runs
