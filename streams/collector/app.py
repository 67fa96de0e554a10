"""The collector's aiohttp application: the Segment HTTP Tracking API, write-key auth and limits.

Routes: ``POST /v1/{track,identify,page,screen,group,alias,batch}`` plus the short forms the
browser libraries use (``/v1/t``, ``/v1/i``, ``/v1/p``, ``/v1/s``, ``/v1/g``, ``/v1/a``, ``/v1/b``,
and the legacy ``/v1/import`` for batch); ``GET /healthz`` (liveness) and ``GET /readyz``
(connected to Kafka). The collector checks sizes and the basic shape only; the worker validates
every event fully and dead-letters what fails. Nothing is kept between requests except the rate
limiter's buckets, so any number of processes can run behind a load balancer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from streams.collector.publisher import Publisher, PublishError, Record
from streams.collector.ratelimit import RateLimiter
from streams.ingest.decode import MAX_DEPTH, depth_exceeds
from streams.settings import Settings
from streams.web.guard import HostPolicy
from streams.web.guard import middleware as host_guard

__all__ = ["CALL_TYPES", "COLLECTOR", "CollectorConfig", "create_app", "parse_write_keys", "prepare_event", "EventError"]

log = logging.getLogger(__name__)

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# Path segment after /v1/ -> call type (None = a batch).
ROUTES: dict[str, str | None] = {
    "track": "track", "t": "track", "identify": "identify", "i": "identify", "page": "page", "p": "page",
    "screen": "screen", "s": "screen", "group": "group", "g": "group", "alias": "alias", "a": "alias",
    "batch": None, "b": None, "import": None,
}
# Segment's libraries set the top-level `channel` to how they send (server, browser, mobile); ours
# means the business channel (web, app, pos, ...), so the transport value is moved out of its way.
TRANSPORT_CHANNELS = frozenset({"server", "browser", "mobile", "client"})
MAX_MESSAGE_ID_CHARS = 100
MAX_REPORTED_ERRORS = 20
_CHUNK = 64 * 1024


def parse_write_keys(text: str) -> frozenset[str]:
    """The accepted write keys from a comma-separated setting (blanks ignored).

    >>> sorted(parse_write_keys(" k1, ,k2 "))
    ['k1', 'k2']
    """
    return frozenset(k.strip() for k in text.split(",") if k.strip())


@dataclass(frozen=True)
class CollectorConfig:
    """What one collector process enforces; built from :class:`Settings`."""

    write_keys: frozenset[str]
    allow_no_auth: bool = False
    rate_per_s: float = 1000.0
    burst: int = 5000
    max_batch_bytes: int = 512_000
    max_event_bytes: int = 32_768
    body_timeout_s: float = 30.0
    hosts: HostPolicy = HostPolicy(frozenset(), frozenset())

    @classmethod
    def from_settings(cls, settings: Settings, allow_no_auth: bool = False, host: str | None = None) -> CollectorConfig:
        return cls(write_keys=parse_write_keys(settings.write_keys), allow_no_auth=allow_no_auth,
                   rate_per_s=settings.collector_rate_per_s, burst=settings.collector_burst,
                   max_batch_bytes=settings.collector_max_batch_bytes, max_event_bytes=settings.max_event_bytes,
                   body_timeout_s=settings.collector_body_timeout_s,
                   hosts=HostPolicy.build(settings.allowed_hosts, settings.allowed_origins, [host or settings.collector_host]))

    @property
    def auth_required(self) -> bool:
        return bool(self.write_keys) or not self.allow_no_auth


class Rejection(Exception):
    """A request answered with an error status and a Segment-style ``{code, message}`` body."""

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = errors or []
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"success": False, "code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return web.Response(status=self.status, body=orjson.dumps(body), content_type="application/json", headers=self.headers)


@dataclass(frozen=True)
class EventError:
    """What is wrong with one event of a request (never echoes the offending value)."""

    index: int
    field: str
    reason: str
    message_id: str | None = None
    too_large: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "field": self.field, "reason": self.reason}
        if self.message_id is not None:
            out["messageId"] = self.message_id
        return out


def utc_now_iso() -> str:
    """Now as UTC ISO 8601 with milliseconds, e.g. ``2026-02-03T02:15:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of two JSON objects; ``override`` (the event's own value) wins."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _partition_key(event: dict[str, Any]) -> bytes | None:
    # userId first: it is the most stable identifier, so one person's events keep their order.
    for field in ("userId", "anonymousId"):
        value = event.get(field)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return str(value).encode()
    return None


def source_id(write_key: str | None) -> str:
    """The ``sourceId`` stamped on every event of a write key (messageId dedup is per source): a
    fingerprint, never the key itself (a credential).

    >>> source_id("wk-demo"), source_id(None)
    ('wk-95aabe715dd1717d', 'wk-none')
    """
    return "wk-" + hashlib.sha256(write_key.encode()).hexdigest()[:16] if write_key else "wk-none"


def prepare_event(raw: Any, index: int, path_type: str | None, batch: dict[str, Any], received_at: str,
                  max_event_bytes: int, source: str | None = None) -> Record | EventError:
    """Check one event's shape and size and enrich it as Segment does; return the Kafka record.

    ``batch`` holds the request-level ``context``, ``integrations`` and ``sentAt`` to merge in
    (the event's own values win). Top-level nulls are dropped (Segment reads them as absent),
    ``receivedAt`` is always ours, and ``writeKey`` is never published.
    """
    if not isinstance(raw, dict):
        return EventError(index, "", f"an event must be a JSON object, not {_json_type(raw)}")
    # Segment treats a null field as absent, and the SDKs send e.g. "userId": null with anonymousId
    raw = {k: v for k, v in raw.items() if v is not None}
    message_id = raw.get("messageId")
    shown_id = message_id[:MAX_MESSAGE_ID_CHARS] if isinstance(message_id, str) else None
    call_type = raw.get("type")
    if path_type is not None and call_type not in (None, path_type):
        return EventError(index, "type", f"type {str(call_type)[:40]!r} does not match the endpoint /v1/{path_type}", shown_id)
    call_type = call_type if path_type is None else path_type
    if call_type not in CALL_TYPES:
        return EventError(index, "type", f"type must be one of {', '.join(CALL_TYPES)}; got {str(call_type)[:40]!r}", shown_id)
    if message_id is None or message_id == "":
        return EventError(index, "messageId", "messageId is required (a client-generated id, stable across retries)")
    if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_CHARS:
        return EventError(index, "messageId", f"messageId must be a string of at most {MAX_MESSAGE_ID_CHARS} characters", shown_id)
    if any(c < " " for c in message_id):
        return EventError(index, "messageId", "messageId must not contain control characters")
    for field in ("context", "integrations"):
        if field in raw and not isinstance(raw[field], dict):
            return EventError(index, field, f"{field} must be a JSON object, not {_json_type(raw[field])}", shown_id)

    event = dict(raw)
    event.pop("writeKey", None)  # a credential: never onto the topic
    if source is not None:
        event["sourceId"] = source  # ours, whatever the client wrote: dedup scope per write key
    event["type"] = call_type
    for field in ("context", "integrations"):
        if batch.get(field):
            event[field] = _merge(batch[field], event.get(field) or {})
    if "sentAt" not in event and batch.get("sentAt") is not None:
        event["sentAt"] = batch["sentAt"]
    channel = event.get("channel")
    if isinstance(channel, str) and channel in TRANSPORT_CHANNELS:
        event.pop("channel")
        event["context"] = {**(event.get("context") or {}), "sdkChannel": channel}
    event["receivedAt"] = received_at
    if depth_exceeds(event):
        return EventError(index, "", f"objects and arrays nest deeper than {MAX_DEPTH} levels", shown_id)
    try:
        value = orjson.dumps(event)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits from a batch's context: never a 500
        return EventError(index, "", "the event cannot be serialised (a number out of range?)", shown_id)
    if len(value) > max_event_bytes:
        return EventError(index, "", f"event is {len(value)} bytes; the limit is {max_event_bytes}", shown_id, too_large=True)
    return _partition_key(event), value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), type(value).__name__)


def basic_auth_user(header: str | None) -> str | None:
    """The user name of an HTTP basic ``Authorization`` header, None when there is no header.

    >>> basic_auth_user("Basic " + base64.b64encode(b"wk1:").decode())
    'wk1'
    """
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        raise Rejection(401, "unauthorized", "use HTTP basic auth with the write key as user name and an empty password")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Rejection(401, "unauthorized", "the Authorization header is not valid basic auth") from None
    return decoded.partition(":")[0]


class _Collector:
    """The request handler and its state (config, limiter, publisher, clocks)."""

    def __init__(self, config: CollectorConfig, publisher: Publisher, monotonic: Callable[[], float],
                 now_iso: Callable[[], str]) -> None:
        self.config = config
        self.publisher = publisher
        self.limiter = RateLimiter(config.rate_per_s, config.burst)
        self.monotonic = monotonic
        self.now_iso = now_iso
        self._keys = tuple(k.encode() for k in config.write_keys)

    def _check_key(self, key: Any) -> str:
        if not self.config.auth_required:
            # no keys to tell senders apart: one shared bucket, so inventing keys does not mint tokens
            return ""
        if not isinstance(key, str) or not key:
            raise Rejection(401, "unauthorized", "missing write key: use HTTP basic auth with the write key as user name")
        candidate = key.encode()
        # compare with every key, in constant time, so timing does not reveal a prefix
        if not any([hmac.compare_digest(candidate, k) for k in self._keys]):
            raise Rejection(401, "unauthorized", "invalid write key")
        return key

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_batch_bytes
        too_large = Rejection(413, "too_large", f"the request body is larger than {limit} bytes (the batch limit)")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            # a body trickled in byte by byte must not hold a connection (and its memory) forever
            async with asyncio.timeout(self.config.body_timeout_s):
                # request.content is already gzip-decoded, so the limit applies to what we really parse
                async for chunk in request.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError:
            raise Rejection(408, "timeout", f"the request body did not arrive within {self.config.body_timeout_s:g}s") from None
        except (HttpProcessingError, RequestPayloadError) as exc:  # e.g. Content-Encoding: gzip on bytes that are not gzip
            raise Rejection(400, "invalid_encoding", f"the body could not be decoded ({request.headers.get('Content-Encoding', 'identity')[:20]}): "
                                                     f"{type(exc).__name__}") from None
        return b"".join(chunks)

    def _events(self, path_type: str | None, doc: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        if path_type is not None:
            return [doc], {}
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise Rejection(400, "invalid_request", f"the body must be {{\"batch\": [events...]}}; batch is {_json_type(batch) if 'batch' in doc else 'missing'}")
        shared: dict[str, Any] = {}
        for field in ("context", "integrations"):
            value = doc.get(field)
            if value is not None and not isinstance(value, dict):
                raise Rejection(400, "invalid_request", f"the batch's {field} must be a JSON object, not {_json_type(value)}")
            shared[field] = value
        sent_at = doc.get("sentAt")
        if sent_at is not None and not isinstance(sent_at, str):
            raise Rejection(400, "invalid_request", f"the batch's sentAt must be a string, not {_json_type(sent_at)}")
        shared["sentAt"] = sent_at
        return batch, shared

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._handle(request)
        except Rejection as rejection:
            return rejection.response()

    async def _handle(self, request: web.Request) -> web.Response:
        path_type = ROUTES[request.match_info["kind"]]
        header_key = basic_auth_user(request.headers.get("Authorization"))
        bucket = self._check_key(header_key) if header_key is not None else None  # refuse a bad key before reading
        body = await self._read_body(request)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if header_key is None:
                self._check_key(None)
            raise Rejection(400, "invalid_json", f"the body is not valid JSON: {exc}"[:300]) from None
        if not isinstance(doc, dict):
            if header_key is None:
                self._check_key(None)
            raise Rejection(400, "invalid_request", f"the body must be a JSON object, not {_json_type(doc)}")
        key = bucket if bucket is not None else self._check_key(doc.get("writeKey"))

        raw_events, shared = self._events(path_type, doc)
        received_at = self.now_iso()
        records: list[Record] = []
        errors: list[EventError] = []
        for index, raw in enumerate(raw_events):
            prepared = prepare_event(raw, index, path_type, shared, received_at, self.config.max_event_bytes, source_id(key))
            if isinstance(prepared, EventError):
                errors.append(prepared)
            else:
                records.append(prepared)
        if errors:
            raise _invalid(errors, len(raw_events))
        # charged only for what would be stored: a rejected request costs its sender no tokens
        decision = self.limiter.take(key, len(records), self.monotonic())
        if not decision.allowed:
            raise Rejection(429, "rate_limited", f"too many events for this write key; retry in {decision.retry_after_header}s",
                            headers={"Retry-After": decision.retry_after_header})
        if records:
            try:
                await self.publisher.publish(records)
            except PublishError as exc:
                log.warning("answering 503: %s", exc)
                raise Rejection(503, "unavailable", f"events not stored, retry: {exc}", headers={"Retry-After": "1"}) from None
        return web.json_response({"success": True})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "kafka": self.publisher.ready})

    async def readyz(self, request: web.Request) -> web.Response:
        # not only "connected once": a broker that stopped answering makes us not ready
        ready = self.publisher.ready and await self.publisher.reachable()
        return web.json_response({"ready": ready}, status=200 if ready else 503)


COLLECTOR: web.AppKey[_Collector] = web.AppKey("collector", _Collector)


def _invalid(errors: Iterable[EventError], total: int) -> Rejection:
    errors = list(errors)
    # 413 only when size is the sole problem, so a client can tell "split it" from "fix it"
    status, code = (413, "too_large") if all(e.too_large for e in errors) else (400, "invalid_request")
    first = errors[0]
    where = f"event {first.index}" if total > 1 or first.index else "the event"
    message = f"{len(errors)} of {total} events rejected, nothing stored; {where}: {first.reason}"
    return Rejection(status, code, message, [e.as_json() for e in errors[:MAX_REPORTED_ERRORS]])


def create_app(config: CollectorConfig, publisher: Publisher, *, monotonic: Callable[[], float] = time.monotonic,
               now_iso: Callable[[], str] = utc_now_iso, middlewares: Iterable[Any] = ()) -> web.Application:
    """The aiohttp application; the caller owns the publisher's lifecycle."""
    collector = _Collector(config, publisher, monotonic, now_iso)
    def refused(status: int, message: str) -> web.StreamResponse:
        return Rejection(status, "forbidden" if status == 403 else "misdirected", message).response()

    # client_max_size only guards aiohttp's own readers; ours streams with its own limit
    app = web.Application(client_max_size=config.max_batch_bytes, middlewares=[host_guard(config.hosts, refused), *middlewares])
    kinds = "|".join(ROUTES)
    app.router.add_post(f"/v1/{{kind:(?:{kinds})}}", collector.handle)
    app.router.add_get("/healthz", collector.healthz)
    app.router.add_get("/readyz", collector.readyz)
    app[COLLECTOR] = collector
    return app
