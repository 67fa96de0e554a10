"""Dead-letter records: the original bytes plus headers that say why (after Kafka Connect's DLQ).

Payloads may hold raw emails and phones, so by default they are sealed with AES-GCM under a key
derived from the PII key (invariant 7); ``touchpoint dlq show`` opens them again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.events.reasons import Rejected

__all__ = ["DeadLetter", "DlqCodec", "HEADER_PREFIX", "scrub_message"]

HEADER_PREFIX = "tp."
_MAGIC = b"TPDLQ1"
# A quoted text, or a schema's own list of allowed values (kept: it is ours, not the record's).
_QUOTED = re.compile(r"one of \[[^\]]*\]|'(?:[^'\\]|\\.)*(?:'|$)|\"(?:[^\"\\]|\\.)*(?:\"|$)")


def scrub_message(message: str) -> str:
    """The reason text without any quoted value: headers are not sealed, and the value may be PII.

    Exception texts quote what they choked on (``Invalid isoformat string: 'ann@example.com'``);
    the record itself, sealed, is what to look at.

    >>> scrub_message("bad timestamp: Invalid isoformat string: 'ann@example.com'")
    "bad timestamp: Invalid isoformat string: '…'"
    >>> scrub_message("KeyError: 'ann@exa")  # cut off by a length limit
    "KeyError: '…'"
    >>> scrub_message("data.channel must be one of ['web', 'app']")
    "data.channel must be one of ['web', 'app']"
    """
    return _QUOTED.sub(lambda m: m.group(0) if m.group(0).startswith("one of") else m.group(0)[0] + "…" + m.group(0)[0], message)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    value: bytes
    headers: list[tuple[str, bytes]]


class DlqCodec:
    """Seals and opens dead-letter payloads."""

    def __init__(self, secret: str, encrypt: bool = True) -> None:
        key = hmac.new(secret.encode(), b"touchpoint-dlq-v1", hashlib.sha256).digest()
        self._aead = AESGCM(key)
        self.encrypt = encrypt

    def seal(self, raw: bytes) -> bytes:
        if not self.encrypt:
            return raw
        nonce = os.urandom(12)
        return _MAGIC + nonce + self._aead.encrypt(nonce, raw, None)

    def open(self, value: bytes, encoding: str) -> bytes:
        if encoding == "none":
            return value
        if encoding != "aesgcm-v1" or not value.startswith(_MAGIC):
            raise ValueError(f"unknown dead-letter encoding {encoding!r}")
        body = value[len(_MAGIC):]
        return self._aead.decrypt(body[:12], body[12:], None)

    def dead_letter(self, raw: bytes | None, rejected: Rejected, topic: str, partition: int, offset: int, failed_at_ms: int) -> DeadLetter:
        headers = [
            ("tp.reason", rejected.reason.value.encode()),
            ("tp.message", scrub_message(rejected.message).encode()[:500]),
            ("tp.stage", rejected.stage.encode()),
            ("tp.source.topic", topic.encode()),
            ("tp.source.partition", str(partition).encode()),
            ("tp.source.offset", str(offset).encode()),
            ("tp.failed_at_ms", str(failed_at_ms).encode()),
            ("tp.encoding", b"aesgcm-v1" if self.encrypt else b"none"),
        ]
        return DeadLetter(self.seal(raw or b""), headers)
