"""The event contract: reason codes, the JSON Schemas and the normalised touchpoint record."""

from streams.events.model import Touchpoint
from streams.events.reasons import Reason, Rejected

__all__ = ["Reason", "Rejected", "Touchpoint"]
