"""Bundles: one ``profile-events`` record carrying several records of one partition.

The ingest agent emits, per batch and ``profile-events`` partition, ONE record holding every event
and merge instruction of that batch for that partition, in batch order::

    {"bundle": [["p1a", {event}], ["p7", {"control": "merge", ...}], ...]}

keyed by its first item's profile id and sent to the partition all its items' keys hash to
(the default partitioner's murmur2), so the table stays co-partitioned and a re-publish by key
lands where it came from. A record per event cost a produce, a Faust delivery and its futures
per event; a bundle costs them once per batch and partition.

Single records (merge forwards and absorbs from the profiles stage, erase controls, and
records written before bundles existed) are still valid: :func:`unbundle` yields every
``(key, record)`` of either form. Items get the position ``offset * POSITIONS + index``, the
unit the profiles stage's replay skip (``po``) compares.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import orjson

__all__ = ["POSITIONS", "MAX_ITEMS", "MAX_BYTES", "key_partition", "encode_bundles", "unbundle", "decoded_items", "position"]

POSITIONS = 4096  # positions per record offset: more than MAX_ITEMS items per bundle
MAX_ITEMS = 1024
MAX_BYTES = 256 * 1024  # well under the broker's and producer's 1 MB record limits


_M = 0x5BD1E995  # Kafka's murmur2 (MurmurHash2, seed 0x9747b28c): the default partitioner's hash


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` of ``data``, as an unsigned 32-bit value.

    Written here, from the published algorithm, so that the bundle format (part of the core) does
    not need a Kafka client; a test checks it against aiokafka's default partitioner."""
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - (length & 3)
    for word in struct.unpack_from(f"<{whole >> 2}I", data):  # every 4-byte little-endian word at once
        k = (word * _M) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * _M) & 0xFFFFFFFF) ^ ((k * _M) & 0xFFFFFFFF)
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h = ((h ^ data[whole]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


@lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (Java's and aiokafka's murmur2).

    Remembered per key: murmur2 in Python costs a few us for a profile id, profile ids repeat,
    and the ingest agent asks once or twice per event."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def position(offset: int, index: int = 0) -> int:
    """Replay position of item ``index`` of the record at ``offset``."""
    return offset * POSITIONS + index


def encode_bundles(items: Sequence[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` records carrying ``items`` (``(profile id, JSON object bytes)``, one
    partition's, in order), split so none exceeds MAX_ITEMS or about MAX_BYTES. The item values
    are spliced in as they are, not decoded and encoded again."""
    chunk: list[bytes] = []
    first = b""
    size = 0
    for key, value in items:
        if chunk and (len(chunk) >= MAX_ITEMS or size + len(value) > MAX_BYTES):
            yield first, _bundle(chunk)
            chunk, size = [], 0
        if not chunk:
            first = key
        chunk.append(b"[" + orjson.dumps(key.decode()) + b"," + value + b"]")
        size += len(value) + len(key) + 8
    if chunk:
        yield first, _bundle(chunk)


def _bundle(encoded_items: list[bytes]) -> bytes:
    return b'{"bundle":[' + b",".join(encoded_items) + b"]}"


def unbundle(key: bytes | None, value: bytes | None) -> list[tuple[bytes | None, Any]]:
    """Every ``(key, record)`` one ``profile-events`` record carries: the items of a bundle
    (records as decoded JSON), or the record itself (``value`` as it is, possibly not JSON)."""
    if value is None or not value.startswith(b'{"bundle":'):
        return [(key, value)]
    try:
        items = orjson.loads(value)["bundle"]
        return [(str(k).encode(), msg) for k, msg in items]
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
        return [(key, value)]  # a damaged bundle: the stage reports it as one invalid record


def decoded_items(key: bytes | None, value: bytes | None) -> list[tuple[bytes | None, Any]]:
    """Like :func:`unbundle`, with single records decoded too (None when not JSON): for readers
    of the topic (identity rebuild, tests) that want every record as a dict."""
    out: list[tuple[bytes | None, Any]] = []
    for k, record in unbundle(key, value):
        if isinstance(record, (bytes, bytearray)):
            try:
                record = orjson.loads(record)
            except orjson.JSONDecodeError:
                record = None
        out.append((k, record))
    return out
