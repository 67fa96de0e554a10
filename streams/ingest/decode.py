"""Decode and validate one raw record: size guard, JSON, messageId, type, schema."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import orjson

from streams.events.fastcheck import accepts
from streams.events.reasons import Reason, Rejected
from streams.events.schema import CALL_TYPES, validator_for

__all__ = ["MAX_DEPTH", "decode", "decode_reference", "depth_exceeds"]

_VALIDATORS = {t: validator_for(t) for t in CALL_TYPES}
MAX_DEPTH = 64
"""Deepest nesting of objects and arrays an event may have (the event itself is level 1). orjson
serialises at most 254 levels, so a deeper event could be read but never written on: it would
fail after identity resolution. Segment events nest a few levels; 64 leaves room."""


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when objects/arrays in ``value`` nest deeper than ``limit`` levels (iterative: no recursion).

    >>> depth_exceeds({"a": [{"b": 1}]}, 3), depth_exceeds({"a": [{"b": 1}]}, 2)
    (False, True)
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def decode(raw: bytes | None, max_bytes: int, fast: bool = True) -> dict[str, Any] | Rejected:
    """Parse and validate; return the event dict or a :class:`Rejected` with a reason code.

    The checks run cheapest first, and the size guard runs before any decoding so a huge
    record costs nothing but its length. The schema check runs msgspec first (``fastcheck``,
    ~2 us): when it accepts, the event is valid; otherwise the fastjsonschema validator decides
    and words the reason, so verdicts and messages are those of :func:`decode_reference`.

    >>> decode(b'{"type":"track","messageId":"m1","event":"x","userId":"u1"}', 32768)["event"]
    'x'
    >>> decode(b"{oops", 32768).reason.value
    'not_json'
    >>> decode(b'{"type":"track","messageId":"m","p":' + b"[" * 70 + b"]" * 70 + b"}", 32768).reason.value
    'too_deep'
    """
    if raw is None:
        return Rejected(Reason.NOT_JSON, "empty record (null value)")
    if len(raw) > max_bytes:
        return Rejected(Reason.TOO_LARGE, f"record is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected(Reason.NOT_JSON, f"not valid JSON: {exc}"[:300])
    if not isinstance(event, dict):
        return Rejected(Reason.SCHEMA_VIOLATION, f"an event must be a JSON object, not {type(event).__name__}")
    # fewer brackets than the limit cannot nest deeper than it: the walk runs only for the rare rest
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and depth_exceeds(event):
        return Rejected(Reason.TOO_DEEP, f"objects and arrays nest deeper than {MAX_DEPTH} levels")
    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        return Rejected(Reason.MISSING_MESSAGE_ID, "messageId is required (a client-generated id, stable across retries)")
    call_type = event.get("type")
    validator = _VALIDATORS.get(call_type) if isinstance(call_type, str) else None
    if validator is None:
        # never quote the value: a dead letter's headers are not encrypted, and it may be PII
        return Rejected(Reason.UNKNOWN_TYPE, f"type must be one of {', '.join(CALL_TYPES)}; got {_kind(call_type)}")
    if fast and accepts(raw, event, call_type):  # type: ignore[arg-type]  # a str here: it named a validator
        return event
    try:
        validator(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        # The message names the path and the rule, never the offending value (it may be PII).
        return Rejected(Reason.SCHEMA_VIOLATION, f"{exc.message}"[:300])
    return event


def decode_reference(raw: bytes | None, max_bytes: int) -> dict[str, Any] | Rejected:
    """:func:`decode` with the fastjsonschema validator alone (no msgspec fast path): the
    reference the fast path is tested against (tests/unit/ingest/test_fastcheck.py), and the
    bench's baseline (touchpoint_tools/bench/prepare_cost.py)."""
    return decode(raw, max_bytes, fast=False)


def _kind(value: Any) -> str:
    """What a wrong value is, without quoting it."""
    if isinstance(value, str):
        return f"an unknown string of {len(value)} characters"
    return "null" if value is None else type(value).__name__
