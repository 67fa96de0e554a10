"""The decode-only floor: a raw aiokafka batch consumer that only decodes and validates.

``getmany`` batches of up to 2,000 records, each record's value through
:func:`streams.ingest.decode.decode` (size guard, JSON, messageId/type checks, the project's
schema check) and nothing else: no normalisation, no identity, no output, auto-commit every 5 s
(aiokafka's default). It is the floor of the cost of any pipeline reading this topic in Python
(its CPU per event is the least one can pay), not a pipeline to compare with: the no-framework
reference (``reference.py``) is that.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer

from streams.events.reasons import Rejected
from streams.ingest.decode import decode
from streams.kafka.client import client_options
from streams.settings import Settings
from touchpoint_tools.bench.pipeline.peers import peer_args, peer_result


async def consume(settings: Settings, topic: str, group: str, expect: int, timeout_s: float) -> dict[str, object]:
    consumer = AIOKafkaConsumer(topic, **client_options(settings), group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=True, max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    max_bytes = settings.max_event_bytes
    events = valid = 0
    first_t = first_cpu = None
    deadline = time.monotonic() + timeout_s
    timed_out = False
    try:
        while events < expect:
            if time.monotonic() > deadline:
                timed_out = True
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if first_t is None and batches:
                first_t, first_cpu = time.perf_counter(), time.process_time()
            for records in batches.values():
                for record in records:
                    events += 1
                    if not isinstance(decode(record.value, max_bytes), Rejected):
                        valid += 1
        end_t, end_cpu = time.perf_counter(), time.process_time()
    finally:
        await consumer.stop()
    if first_t is None:
        return peer_result(0, 0, 0.0, 0.0, True)
    return peer_result(events, valid, end_t - first_t, end_cpu - first_cpu, timed_out, peer="decode_floor")


def main() -> int:
    args = peer_args(__doc__.splitlines()[0]).parse_args()
    result = asyncio.run(consume(Settings.from_env(), args.topic, args.group, args.expect, args.timeout))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if not result["timed_out"] else 1


if __name__ == "__main__":
    sys.exit(main())
