"""Dead-letter reason codes: enum values equal the documented strings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Reason", "Rejected"]


class Reason(StrEnum):
    """Why a record went to the dead-letter topic (README, 'Dead letters')."""

    NOT_JSON = "not_json"
    TOO_LARGE = "too_large"
    MISSING_MESSAGE_ID = "missing_message_id"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA_VIOLATION = "schema_violation"
    NO_IDENTIFIER = "no_identifier"
    TOO_DEEP = "too_deep"
    PROCESSING_ERROR = "processing_error"
    EVENT_TIME_OUT_OF_WINDOW = "event_time_out_of_window"  # older than TOUCHPOINT_EVENT_MAX_PAST_S
    REFUSED_BY_BROKER = "refused_by_broker"  # a derived record Kafka refused for good (e.g. too large)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A pure step's verdict that a record cannot be applied; the agent dead-letters it."""

    reason: Reason
    message: str
    stage: str = "ingest"
