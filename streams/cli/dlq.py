"""``touchpoint dlq summary|show``: what is in the dead-letter topic, and why."""

from __future__ import annotations

import argparse
import base64
import collections
import sys

import orjson

from streams.ingest.dlq import DlqCodec
from streams.kafka.reading import read_to_end
from streams.kafka.topics import DLQ
from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="inspect the dead-letter topic")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="SUBCOMMAND")
    s = dsub.add_parser("summary", help="count dead letters by reason")
    s.add_argument("--json", action="store_true", help='print {"reason": count} as JSON')
    s.set_defaults(run=summary)
    sh = dsub.add_parser("show", help="print dead letters as JSON lines with headers and the original record")
    sh.add_argument("--limit", type=int, default=100)
    sh.set_defaults(run=show)


def _headers(record) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


async def summary(args: argparse.Namespace, settings: Settings) -> int:
    counts: collections.Counter[str] = collections.Counter()
    async for record in read_to_end(settings, settings.topic(DLQ)):
        counts[_headers(record).get("tp.reason", "unknown")] += 1
    if args.json:
        print(orjson.dumps(dict(sorted(counts.items()))).decode())
    else:
        for reason, n in counts.most_common():
            print(f"{n:8d}  {reason}")
        print(f"{sum(counts.values()):8d}  total")
    return 0


async def show(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_pii_key()  # the seal key derives from it
    codec = DlqCodec(settings.pii_key, settings.dlq_encrypt)
    shown = 0
    async for record in read_to_end(settings, settings.topic(DLQ)):
        headers = _headers(record)
        original = codec.open(record.value or b"", headers.get("tp.encoding", "none"))
        try:
            text = original.decode()
            body = {"original": text}
        except UnicodeDecodeError:
            body = {"original_base64": base64.b64encode(original).decode()}
        sys.stdout.write(orjson.dumps({"offset": record.offset, "partition": record.partition, **headers, **body}).decode() + "\n")
        shown += 1
        if shown >= args.limit:
            break
    return 0
