"""Decode and validate one raw record: size guard, JSON, messageId, type, schema."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import orjson

from streams.events.reasons import Reason, Rejected
from streams.events.schema import CALL_TYPES, validator_for

__all__ = ["decode"]

_VALIDATORS = {t: validator_for(t) for t in CALL_TYPES}


def decode(raw: bytes | None, max_bytes: int) -> dict[str, Any] | Rejected:
    """Parse and validate; return the event dict or a :class:`Rejected` with a reason code.

    The checks run cheapest first, and the size guard runs before any decoding so a huge
    record costs nothing but its length.

    >>> decode(b'{"type":"track","messageId":"m1","event":"x","userId":"u1"}', 32768)["event"]
    'x'
    >>> decode(b"{oops", 32768).reason.value
    'not_json'
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
    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        return Rejected(Reason.MISSING_MESSAGE_ID, "messageId is required (a client-generated id, stable across retries)")
    call_type = event.get("type")
    validator = _VALIDATORS.get(call_type) if isinstance(call_type, str) else None
    if validator is None:
        return Rejected(Reason.UNKNOWN_TYPE, f"type must be one of {', '.join(CALL_TYPES)}; got {str(call_type)[:40]!r}")
    try:
        validator(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        # The message names the path and the rule, never the offending value (it may be PII).
        return Rejected(Reason.SCHEMA_VIOLATION, f"{exc.message}"[:300])
    return event
