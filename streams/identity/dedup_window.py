"""The compact dedup window: which message ids were seen, in time-sliced hashes of short digests.

Dedup has two tiers (docs/performance.md, "Capacity"; the Lua side is resolve.lua):

- the **replay tier**, ``dedup:<message id>`` and ``dres:<message id>`` with a TTL of
  ``TOUCHPOINT_DEDUP_TTL_S`` (15 minutes by default): the first claim, outcome and profile and the
  stored reply, so a record redelivered after a crash reports exactly what it reported first;
- the **window tier**, ``dw:<slice>:<shard>`` hashes, for ``TOUCHPOINT_DEDUP_WINDOW_S`` (24 hours
  by default): field = :data:`FIELD_BYTES` bytes of a BLAKE2b digest of the message id, value = the
  first claim without its topic (``partition/offset``). Another claim on a digest = a duplicate.

Time is cut into :data:`SLICES` slices per window (``slice_s`` = window / SLICES, rounded up, by
Redis's clock, read once per script call); an id is written into the slice of its first sight and
looked up in the current slice and the SLICES before it, so it is found for at least one window
(and at most SLICES + 1 slices). Each hash expires as a whole at the end of the last slice that
looks at it: memory holds 1 to 1 + 1/SLICES windows of ids, with one expiry per hash, not per id.
The shard (``shard_bits`` bits of the digest, independent of the field's bytes) spreads a slice's
ids over ``2**shard_bits`` hashes; at most 128 fields each (Redis's ``hash-max-listpack-entries``)
keeps every hash a compact listpack: size ``shard_bits`` so that rate x slice_s / 2**shard_bits
stays below 128 (:func:`shard_bits_for`).
"""

from __future__ import annotations

import hashlib
import math

__all__ = ["SLICES", "FIELD_BYTES", "LISTPACK_FIELDS", "slice_seconds", "slice_of", "lookup_slices", "expires_at",
           "digest", "claim_tag", "shard_bits_for", "false_duplicate_probability"]

SLICES = 4               # slices per window: lookups per new id = SLICES + 1, memory 1 to 1 + 1/SLICES windows
FIELD_BYTES = 10         # digest bytes stored per id (80 bits)
LISTPACK_FIELDS = 128    # Redis's default hash-max-listpack-entries


def slice_seconds(window_s: int) -> int:
    """Length of one slice.

    >>> slice_seconds(86400), slice_seconds(10)
    (21600, 3)
    """
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    return -(-window_s // SLICES)


def slice_of(now_s: int, slice_s: int) -> int:
    """The slice a time (seconds) falls in."""
    return now_s // slice_s


def lookup_slices(now_s: int, slice_s: int) -> range:
    """The slices a lookup at ``now_s`` reads: the current one and the SLICES before it.

    An id written at t is found at every t' with t' - t < SLICES * slice_s (>= the window):

    >>> list(lookup_slices(100, 10))
    [6, 7, 8, 9, 10]
    """
    cur = slice_of(now_s, slice_s)
    return range(cur - SLICES, cur + 1)


def expires_at(slice_no: int, slice_s: int) -> int:
    """Unix time (s) at which the hash of a slice expires: the end of the last slice that reads it.

    >>> expires_at(6, 10)  # read by lookups in slices 6..10, i.e. until t = 110
    110
    """
    return (slice_no + SLICES + 1) * slice_s


def digest(dedup_id: str, shard_bits: int) -> tuple[int, bytes]:
    """(shard, field) of a message id (as ``streams.events.model.dedup_id`` gives it).

    The field is the first FIELD_BYTES bytes of BLAKE2b-128 of the id, the shard the next 4 bytes'
    top ``shard_bits`` bits: a false match needs all FIELD_BYTES * 8 + shard_bits bits equal.

    >>> shard, field = digest("wk-1/m1", 8)
    >>> 0 <= shard < 256, len(field)
    (True, 10)
    >>> digest("m1", 0)[0]
    0
    """
    if not 0 <= shard_bits <= 32:
        raise ValueError("shard_bits must be between 0 and 32")
    d = hashlib.blake2b(dedup_id.encode(), digest_size=16).digest()
    return int.from_bytes(d[FIELD_BYTES:FIELD_BYTES + 4], "big") >> (32 - shard_bits), d[:FIELD_BYTES]


def claim_tag(claim: str) -> str:
    """What the window keeps of a claim ``topic/partition/offset``: ``partition/offset`` (a namespace
    ingests one input topic; Kafka topic names hold no ``/``). Other claims are kept whole.

    >>> claim_tag("ns.touchpoints/3/1234567"), claim_tag("x")
    ('3/1234567', 'x')
    """
    head, sep, rest = claim.partition("/")
    return rest if sep else claim


def shard_bits_for(events_per_s: float, window_s: int) -> int:
    """The fewest shard bits that keep a full slice's hashes at most LISTPACK_FIELDS fields on average.

    >>> shard_bits_for(15_000, 86400), shard_bits_for(1_000, 86400)
    (22, 18)
    """
    per_slice = events_per_s * slice_seconds(window_s)
    return max(0, math.ceil(math.log2(max(1.0, per_slice / LISTPACK_FIELDS))))


def false_duplicate_probability(population: float, shard_bits: int) -> float:
    """Chance that a new id's lookup matches one of ``population`` other ids held (union bound).

    A new id is looked up in SLICES + 1 slices; an id matches only an id of its own shard with the
    same field, so the chance is at most population / 2**(FIELD_BYTES * 8 + shard_bits).

    >>> f"{false_duplicate_probability(15_000 * 86400 * 1.25, 22):.1e}"
    '3.2e-22'
    """
    return population / 2.0 ** (FIELD_BYTES * 8 + shard_bits)
