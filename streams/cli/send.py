"""``touchpoint send FILE``: publish each line of FILE verbatim as one record (malformed lines too)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streams.kafka.client import client_options
from streams.kafka.reading import topic_exists
from streams.kafka.topics import INPUT, ensure_topics
from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("send", help="publish each line of FILE verbatim as one record ('-' = stdin)")
    p.add_argument("file", help="a file of records, one per line, or - for standard input")
    p.add_argument("--topic", help="topic to publish to (default: the namespace's input topic)")
    p.set_defaults(run=run)


def read_lines(path: str) -> list[bytes]:
    """Lines without their terminating newline; a final newline does not make an empty record."""
    from streams.cli.errors import UsageError

    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"{path}: no such file")
        data = file.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


async def publish(settings: Settings, topic: str, values: Iterable[bytes], keys: Iterable[bytes | None] | None = None) -> int:
    """Publish values with acks=all and idempotence; return how many the broker acknowledged."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True,
                                linger_ms=5, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = []
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            key = next(key_iter) if key_iter is not None else None
            futures.append(await producer.send(topic, value=value, key=key))
            if len(futures) >= 5000:
                for fut in futures:
                    await fut
                futures.clear()
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return 0


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError

    lines = read_lines(args.file)
    await ensure_topics(settings)
    topic = args.topic or settings.topic(INPUT)
    # a producer would wait a minute for metadata of a topic that is not there, then raise
    if args.topic and not await topic_exists(settings, topic):
        raise UsageError(f"--topic {topic}: no such topic (the namespace's input topic is {settings.topic(INPUT)})")
    await publish(settings, topic, lines)
    print(f"sent {len(lines)} records to {topic}", file=sys.stderr)
    return 0
