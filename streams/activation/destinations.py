"""Destinations: where audience changes and profile updates are forwarded (definitions file,
``[destinations.NAME]``), how a delivery is signed, retried and dead-lettered. No Kafka here:
:class:`Deliverer` takes a send function, so retries, backoff and the dead-letter decision are
unit-tested; streams/activation/forwarder.py feeds it from the topics.

    [destinations.crm]
    kind = "webhook"                      # or "kafka"
    url = "http://127.0.0.1:9000/hooks"   # webhook: POST, JSON body, signed (X-Touchpoint-Signature)
    streams = ["audiences", "profile-updates"]
    audiences = ["repeat_mask_buyers_hubei"]   # optional: only these audiences' changes
    purpose = "marketing"                 # the consent purpose this destination serves (default "none")
    max_attempts = 8                      # then the delivery goes to <ns>.destinations.dlq
    backoff_s = 0.5                       # first retry wait; doubles, at most max_backoff_s
    max_backoff_s = 30.0
    timeout_s = 10.0

    [destinations.warehouse]
    kind = "kafka"
    topic = "crm-inbox"                   # produced as <ns>.crm-inbox, key = profile id

Consent (``purpose``): a destination with a purpose other than ``"none"`` receives the changes
of audiences of that purpose only (their members consented to it: audiences.py), and a profile
update only when the profile's consent flag for the purpose is true; otherwise it receives
``{"type": "withheld", "profile_id", "purpose"}`` instead, which tells it to drop what it holds
about that profile (consent withdrawn, or never given). ``"none"`` (the default) forwards
everything, as before purposes existed: give one to every destination that is not a
suppression list.

Request body: ``{"stream", "key", "idempotency_key", "record"}`` (``record`` null = the profile
was erased). Headers: ``X-Touchpoint-Idempotency-Key``, ``X-Touchpoint-Timestamp`` (epoch
seconds), ``X-Touchpoint-Signature: sha256=HEX`` where HEX = HMAC-SHA256(TOUCHPOINT_WEBHOOK_SECRET,
timestamp + "." + body). 2xx = delivered; 408, 429, 5xx, timeouts and connection errors are
retried; any other status is permanent and dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["DestinationDef", "parse_destinations", "sign", "verify", "Delivery", "Deliverer", "Outcome", "request_body", "STREAMS"]

STREAMS = ("audiences", "profile-updates")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True, slots=True)
class DestinationDef:
    name: str
    kind: str                              # webhook | kafka
    url: str = ""
    topic: str = ""
    streams: tuple[str, ...] = STREAMS
    audiences: frozenset[str] | None = None
    max_attempts: int = 8
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 10.0
    purpose: str = "none"                  # consent purpose served; "none" = no consent required

    def wants(self, stream: str, record: dict[str, Any] | None) -> bool:
        if stream not in self.streams:
            return False
        if stream == "audiences":
            if record is None or (self.audiences is not None and record.get("audience") not in self.audiences):
                return False
            return self.purpose == "none" or record.get("purpose") == self.purpose
        return True

    def visible(self, stream: str, record: dict[str, Any] | None) -> dict[str, Any] | None:
        """What this destination may receive of a record it wants: a profile update of a profile
        that has not consented to :attr:`purpose` becomes a ``withheld`` notice (no personal data)."""
        if stream != "profile-updates" or record is None or self.purpose == "none" or record.get("type") != "profile":
            return record
        consent = (record.get("profile") or {}).get("consent") or {}
        if consent.get(self.purpose) is True:
            return record
        return {"schema": record.get("schema"), "type": "withheld", "profile_id": record.get("profile_id"),
                "purpose": self.purpose, "ts_ms": record.get("ts_ms")}


def parse_destinations(doc: Any, path: str, audiences: Mapping[str, str], error: type[Exception]) -> tuple[DestinationDef, ...]:
    """Validate ``[destinations.*]`` (``audiences``: name -> purpose); raise ``error`` with a one-line message."""
    if not isinstance(doc, dict):
        raise error(f"{path}: destinations must be a table")
    out = []
    allowed = {"kind", "url", "topic", "streams", "audiences", "max_attempts", "backoff_s", "max_backoff_s", "timeout_s", "purpose"}
    for name, b in doc.items():
        at = f"{path}: destinations.{name}"
        if not _NAME.match(name):
            raise error(f"{at}: a name is lower-case letters, digits and '_'")
        if not isinstance(b, dict):
            raise error(f"{at} must be a table")
        extra = set(b) - allowed
        if extra:
            raise error(f"{at}: unknown field(s) {', '.join(sorted(extra))}")
        kind = b.get("kind")
        streams = b.get("streams", list(STREAMS))
        if not isinstance(streams, list) or not streams or any(s not in STREAMS for s in streams):
            raise error(f"{at}.streams: a list of {', '.join(STREAMS)}")
        only = b.get("audiences")
        if only is not None and (not isinstance(only, list) or any(a not in audiences for a in only)):
            raise error(f"{at}.audiences: a list of audiences defined in this file")
        purpose = b.get("purpose", "none")
        if not isinstance(purpose, str) or not purpose or len(purpose) > 64:
            raise error(f"{at}.purpose: the consent purpose it serves (e.g. \"marketing\"), or \"none\"")
        wrong = sorted(a for a in (only or ()) if purpose != "none" and audiences[a] != purpose)
        if wrong:
            raise error(f"{at}.audiences: {', '.join(wrong)} serve(s) another purpose than {purpose!r}")
        nums = {}
        for field, default, lo in (("max_attempts", 8, 1), ("backoff_s", 0.5, 0.0), ("max_backoff_s", 30.0, 0.0), ("timeout_s", 10.0, 0.1)):
            v = b.get(field, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
                raise error(f"{at}.{field}: a number >= {lo}")
            nums[field] = v
        common = dict(streams=tuple(streams), audiences=None if only is None else frozenset(only), max_attempts=int(nums["max_attempts"]),
                      backoff_s=float(nums["backoff_s"]), max_backoff_s=float(nums["max_backoff_s"]), timeout_s=float(nums["timeout_s"]),
                      purpose=purpose)
        if kind == "webhook":
            url = b.get("url")
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise error(f"{at}.url: an http:// or https:// URL")
            out.append(DestinationDef(name, kind, url=url, **common))
        elif kind == "kafka":
            topic = b.get("topic")
            if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in STREAMS:
                raise error(f"{at}.topic: a topic name (letters, digits, '.', '_', '-'), not one of the public streams")
            out.append(DestinationDef(name, kind, topic=topic, **common))
        else:
            raise error(f"{at}.kind: webhook or kafka, got {kind!r}")
    return tuple(out)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (documented; used by the tests' receiver)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record to deliver: where it came from and what is sent."""

    stream: str
    key: str
    record: dict[str, Any] | None
    idempotency_key: str
    source: str                            # topic/partition/offset of the record delivered


def idempotency_key_for(stream: str, record: dict[str, Any] | None, source: str) -> str:
    """Audience changes carry their own key (stable across the agent's replays); a profile update
    is identified by its position in the topic (stable across the forwarder's re-deliveries)."""
    if stream == "audiences" and record is not None and isinstance(record.get("idempotency_key"), str):
        return record["idempotency_key"]
    return hashlib.sha256(source.encode()).hexdigest()[:32]


def request_body(d: Delivery) -> bytes:
    return orjson.dumps({"stream": d.stream, "key": d.key, "idempotency_key": d.idempotency_key, "record": d.record})


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    attempts: int
    reason: str = ""                       # last failure, for the dead-letter record


# send(delivery) -> (ok, retryable, reason)
Send = Callable[[Delivery], Awaitable[tuple[bool, bool, str]]]


class Deliverer:
    """Retries one delivery with exponential backoff; says whether it must be dead-lettered."""

    def __init__(self, dest: DestinationDef, send: Send, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.dest = dest
        self.send = send
        self.sleep = sleep

    async def deliver(self, d: Delivery) -> Outcome:
        wait = self.dest.backoff_s
        reason = ""
        for attempt in range(1, self.dest.max_attempts + 1):
            ok, retryable, reason = await self.send(d)
            if ok:
                return Outcome(True, attempt)
            if not retryable or attempt == self.dest.max_attempts:
                return Outcome(False, attempt, reason)
            await self.sleep(min(wait, self.dest.max_backoff_s))
            wait = wait * 2 if wait > 0 else 0.0
        return Outcome(False, self.dest.max_attempts, reason)


def webhook_sender(dest: DestinationDef, secret: str, session: Any, clock: Callable[[], float]) -> Send:
    """An aiohttp ``session`` POSTing signed requests to ``dest.url``."""
    import aiohttp

    async def send(d: Delivery) -> tuple[bool, bool, str]:
        body = request_body(d)
        ts = int(clock())
        headers = {"Content-Type": "application/json", "X-Touchpoint-Idempotency-Key": d.idempotency_key,
                   "X-Touchpoint-Timestamp": str(ts), "X-Touchpoint-Signature": sign(secret, ts, body)}
        try:
            async with session.post(dest.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=dest.timeout_s)) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True, False, ""
                return False, resp.status in (408, 429) or resp.status >= 500, f"http_{resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return False, True, f"unreachable: {type(exc).__name__}"
    return send
