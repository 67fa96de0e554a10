"""Settings: the one configuration object, read from the environment.

Every setting is a field of :class:`Settings` with its environment variable, type, default and a
one-line description. The README's settings table is generated from these fields
(``python -m streams.settings --markdown``) and a test fails when the two drift apart.
Nothing else in the project reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError", "mask_url", "setting_fields"]

ENV_PREFIX = "TOUCHPOINT_"
DEV_PII_KEY = "dev-only-pii-key-change-me"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _setting(default: Any, doc: str, *, secret: bool = False, url: bool = False, choices: tuple[str, ...] = ()) -> Any:
    """``secret``: never shown; ``url``: shown with its password and secret query values masked."""
    return field(default=default, metadata={"doc": doc, "secret": secret, "url": url, "choices": choices})


_SECRET_QUERY = ("password", "passwd", "pass", "secret", "token", "key", "auth", "signature", "sig")


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and secret-looking query values replaced by ``***``.

    >>> mask_url("rediss://tp:hunter2@redis:6380/0")
    'rediss://tp:***@redis:6380/0'
    >>> mask_url("http://am:9093/?token=abc&x=1")
    'http://am:9093/?token=***&x=1'
    >>> mask_url("redis://:pw@h/0"), mask_url("http://127.0.0.1:9093")
    ('redis://:***@h/0', 'http://127.0.0.1:9093')
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        # a lone user info (redis://secret@h) is a password for Redis (AUTH <password>): mask it too
        netloc = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    path, q, query = tail.partition("?")
    if q:
        parts = []
        for item in query.split("&"):
            name, eq, _ = item.partition("=")
            parts.append(f"{name}=***" if eq and any(s in name.lower() for s in _SECRET_QUERY) else item)
        tail = path + q + "&".join(parts)
    return f"{scheme}://{netloc}{slash}{tail}"


def _home(*parts: str) -> str:
    return str(Path.home().joinpath(*parts))


@dataclass(frozen=True)
class Settings:
    """All configuration of a Touchpoint worker, CLI command or test run.

    Field ``foo_bar`` is read from ``TOUCHPOINT_FOO_BAR``.
    """

    # -- namespace -------------------------------------------------------------------------
    namespace: str = _setting("tp", "Prefix of every topic, consumer group and Redis key; environments and test runs sharing a Kafka and a Redis use different namespaces.")

    # -- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = _setting("127.0.0.1:19092", "Kafka bootstrap servers, comma-separated (the embedded stack listens on 127.0.0.1:19092).")
    kafka_security_protocol: str = _setting("PLAINTEXT", "Kafka security protocol.", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    kafka_metadata_max_age_s: float = _setting(15.0, "Longest a Kafka client (the worker's Faust consumer and producer, and every client the project builds) goes without refreshing its cluster metadata. Also the longest a consumer can wait for metadata after aiokafka 0.14 loses a refresh request (a topic-list change during a timed refresh: docs/reliability.md), so keep it well under a minute; Kafka's default is 300.")
    kafka_sasl_mechanism: str = _setting("SCRAM-SHA-512", "SASL mechanism when the protocol is SASL_*.", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    kafka_sasl_username: str = _setting("", "SASL user name.")
    kafka_sasl_password: str = _setting("", "SASL password.", secret=True)
    kafka_ssl_cafile: str = _setting("", "CA bundle (PEM) to verify the brokers' TLS certificates; empty = system CAs.")
    partitions: int = _setting(4, "Partitions of every topic the project creates; the upper bound on workers sharing the work.")
    replication_factor: int = _setting(1, "Replication factor of the topics the project creates (3 on a production cluster).")

    # -- Redis -----------------------------------------------------------------------------
    redis_url: str = _setting("redis://127.0.0.1:16379/0", "Redis URL (redis:// or rediss://, user and password allowed) holding the identity graph and dedup keys.", url=True)

    # -- ingest ----------------------------------------------------------------------------
    max_event_bytes: int = _setting(32768, "Records larger than this are dead-lettered as too_large before decoding.")
    dedup_ttl_s: int = _setting(900, "Replay tier of messageId dedup: how long the first claim, outcome and stored reply of a messageId are kept, so a record redelivered after a crash (same topic/partition/offset) reports exactly what it reported first. The longest commit outage to ride out exactly (docs/performance.md, Capacity).")
    dedup_window_s: int = _setting(86400, "Window tier of messageId dedup: a messageId is remembered (as a 10-byte digest in time-sliced hashes) for at least this long, at most 1.25 times it; another record with it is dropped as a duplicate.")
    dedup_shard_bits: int = _setting(20, "The window tier spreads each quarter-window of messageIds over 2^this hashes; keep events/s x window/4 / 2^this below 128 so every hash stays a compact listpack (20 fits ~6,000 events/s with a 24 h window, 22 fits 25,000).")
    batch_size: int = _setting(500, "Most records the ingest service takes per batch (one Redis round trip per batch), and the demand agent from its queue.")
    batch_within_s: float = _setting(0.05, "Longest a profile's changelog write is held back to be coalesced with later changes of the same key (the input is consumed in whatever batches the broker has, with no wait).")
    pii_key: str = _setting(DEV_PII_KEY, "Secret key of the HMAC-SHA256 applied to email and phone values (the dead-letter seal key is derived from it). Required: the worker, `erase` and `dlq show` refuse to start with the public default unless TOUCHPOINT_DEV_MODE is on.", secret=True)
    pii_key_id: str = _setting("k1", "Identifier of pii_key, written next to hashed values so keys can be rotated.")
    default_phone_region: str = _setting("CN", "Region assumed for phone numbers written without a country code (ISO 3166 alpha-2).")
    dlq_encrypt: bool = _setting(True, "Encrypt dead-letter payloads (AES-GCM, key derived from pii_key) so raw PII in rejected records is not readable from the topic.")
    dev_mode: bool = _setting(False, "Development mode: allows the public default TOUCHPOINT_PII_KEY (stored email/phone hashes and dead letters are then not protected). `touchpoint demo` and `bench` turn it on for themselves. Never in production.")
    identity_rules: str = _setting("", "TOML file of identity rules (priorities, unique types, limits, blocked values and patterns, phone validity, supernode thresholds; see docs/identity.md). Empty = the built-in rules. Checked at start; `touchpoint identity rules --check FILE` checks one.")
    max_clock_skew_s: int = _setting(86400, "Client clocks further than this from ours are not trusted for skew correction.")
    event_max_future_s: int = _setting(300, "Event-time window, future side: an event whose (skew-corrected) time is later than its receive time plus this is applied at its receive time, counted in touchpoint_event_time_corrected_total; keep it well below TOUCHPOINT_DEMAND_LATENESS_S. Also the demand stage's horizon: counts for buckets later than the wall clock plus this are refused.")
    event_max_past_s: int = _setting(3650 * 86400, "Event-time window, past side: an event older than its receive time minus this is dead-lettered as event_time_out_of_window (1970 or year-1 timestamps of broken clients); raise it for older backfills.")

    # -- worker ----------------------------------------------------------------------------
    store: str = _setting("memory://", "Faust table store: memory:// (rebuilt from the changelog at start) or rocksdb://.")
    data_dir: str = _setting(_home(".local", "share", "touchpoint", "worker"), "Directory for the worker's local table state.")
    commit_interval_s: float = _setting(1.0, "How often processed offsets are committed.")
    max_record_bytes: int = _setting(1_000_000, "Largest Kafka record (batch) the worker's producer sends (max.request.size). A worker refuses to start (exit 2) when the broker's message.max.bytes or a project topic's max.message.bytes is smaller.")
    profile_max_bytes: int = _setting(65536, "Largest encoded profile value; above it the timeline, traits, categories, consent flags and identifiers are trimmed, least valuable first (docs/profiles.md), counted in touchpoint_profile_trimmed_total. At most TOUCHPOINT_MAX_RECORD_BYTES / 4, so a profile travels whole in a merge.")
    session_timeout_s: float = _setting(10.0, "Consumer-group session timeout: how fast a dead worker's partitions move to others.")
    log_level: str = _setting("info", "Log level of workers and commands.", choices=("debug", "info", "warning", "error"))
    event_loop: str = _setting("uvloop", "Event loop of workers: uvloop (libuv; less CPU per record) or asyncio (the standard library's).",
                               choices=("uvloop", "asyncio"))
    gc_threshold: int = _setting(50_000, "Allocations between the worker's young-generation garbage collections (Python's default is 700; 0 keeps Python's thresholds). Nearly every object of the per-record path dies by reference counting, so frequent collections only cost CPU.")

    # -- HTTP ------------------------------------------------------------------------------
    web_host: str = _setting("127.0.0.1", "Address the worker's HTTP server binds to (loopback by default).")
    web_port: int = _setting(6066, "Port of the worker's HTTP server (metrics, health, profile lookup).")
    web_advertised_host: str = _setting("", "Host name other workers use to reach this worker's HTTP server (profile lookups are forwarded to the owner of a profile); empty = TOUCHPOINT_WEB_HOST, or this machine's host name when that is 0.0.0.0 or ::.")
    allowed_hosts: str = _setting("", "Host names the worker's and the collector's HTTP servers answer to, comma-separated, besides IP addresses, localhost and the advertised host; other Host headers get 421 (DNS-rebinding protection). `*` = any.")
    allowed_origins: str = _setting("", "Browser origins (scheme://host[:port]) allowed to send state-changing requests (POST) to the worker and the collector, comma-separated; other cross-site requests get 403 (CSRF protection). Requests without Origin/Sec-Fetch-Site headers (SDKs, curl) are not affected.")
    web_token: str = _setting("", "If set, HTTP requests must carry 'Authorization: Bearer <token>' (except /healthz and the static shell of /oncall, which holds no data).", secret=True)

    # -- HTTP collector ----------------------------------------------------------------------
    collector_host: str = _setting("127.0.0.1", "Address the Segment-compatible HTTP collector binds to (loopback by default).")
    collector_port: int = _setting(8088, "Port of the Segment-compatible HTTP collector.")
    write_keys: str = _setting("", "Write keys the collector accepts, comma-separated (HTTP basic auth user name, or writeKey in the body). Empty = `touchpoint collect` refuses to start unless given --allow-no-auth.", secret=True)
    collector_rate_per_s: float = _setting(1000.0, "Events per second one write key may send to one collector process (token bucket; N processes allow N times this).")
    collector_burst: int = _setting(5000, "Events one write key may send at once above the sustained rate (the token bucket's size).")
    collector_max_batch_bytes: int = _setting(512000, "Largest request body the collector accepts, after gzip decoding (Segment allows 500 KB per batch); events are limited by TOUCHPOINT_MAX_EVENT_BYTES.")
    collector_publish_timeout_s: float = _setting(10.0, "Longest wait for Kafka to acknowledge a request's events; after it the collector answers 503 and the client retries.")
    collector_header_timeout_s: float = _setting(10.0, "Longest time a connection to the collector may take to send a request's headers (from connecting, or from the previous answer); then it is closed.")
    collector_body_timeout_s: float = _setting(30.0, "Longest time the collector waits for a request's body; then it answers 408.")
    collector_max_connections: int = _setting(512, "Open connections one collector process keeps; beyond it the oldest connection not in a request is closed (keep it below the file-descriptor limit).")

    # -- demand ----------------------------------------------------------------------------
    demand_bucket_s: int = _setting(3600, "Event-time bucket of the demand-shift detector. Hourly is the benchmarked setting; shorter buckets alert no earlier and far more often falsely (docs/demand.md, bucket size).")
    demand_lateness_s: int = _setting(600, "How late an event may arrive and still count in its bucket.")
    demand_timezone: str = _setting("Asia/Shanghai", "IANA time zone whose local time of week drives the seasonal baseline.")
    demand_dimensions: str = _setting("product,category,region,channel,category_region,store", "Dimensions the demand detector watches, comma-separated (store: context.store.id, else properties.store_id).")
    demand_measures: str = _setting("orders,units,revenue,interest", "Demand measures watched per dimension key, comma-separated: orders (one per order id), units (product quantities), revenue (reporting currency, refunds subtract), interest (views, add-to-cart, searches). A units or revenue alert on a product, category or category x region is published only while that key's orders or interest, or its category, has an alert open the same way (docs/demand.md, Lifecycle item 10): watch orders or interest with them.")
    demand_currency: str = _setting("CNY", "Reporting currency of the revenue measure; an event without a currency is taken to be in it, revenue in other currencies is not summed (counted in touchpoint_demand_uncounted_total).")
    demand_min_excess: str = _setting("orders=12,units=24,revenue=1500,interest=40", "Volume rule: an alert is published once its shift moved this much of the measure away from the baseline (summed since it opened), MEASURE=AMOUNT pairs.")
    alertmanager_url: str = _setting("", "Alertmanager base URL (e.g. http://127.0.0.1:9093); when set, demand alerts are also posted to its API v2. Empty = off.", url=True)

    # -- activation ------------------------------------------------------------------------
    traits: str = _setting("", "Activation definitions file (TOML): computed traits, audiences and destinations (docs/activation.md). Empty = none.")
    reevaluate_per_tick: int = _setting(500, "Most profiles whose computed traits depend on time a worker re-evaluates per 10 s tick (window slides).")
    webhook_secret: str = _setting("", "Key of the HMAC-SHA256 signature (X-Touchpoint-Signature) on webhook destination requests; required when a webhook destination is defined.", secret=True)

    # -- embedded stack ---------------------------------------------------------------------
    stack_dir: str = _setting(_home(".local", "share", "touchpoint", "stack"), "Data, logs and pid files of the embedded Kafka and Redis.")
    cache_dir: str = _setting(_home(".cache", "touchpoint"), "Cache of the Kafka jars fetched from Maven Central.")
    stack_kafka_port: int = _setting(19092, "Client port of the embedded Kafka broker.")
    stack_controller_port: int = _setting(19093, "KRaft controller port of the embedded Kafka broker.")
    stack_redis_port: int = _setting(16379, "Port of the embedded Redis server.")

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``TOUCHPOINT_*`` variables, then apply keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = ENV_PREFIX + f.name.upper()
            if var in env:
                values[f.name] = _parse(var, env[var], type(f.default))
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first variable with an unusable value."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices") or ()
            if choices and getattr(self, f.name) not in choices:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()}={getattr(self, f.name)!r}: expected one of {', '.join(choices)}")
        if not self.namespace or not all(c.isalnum() or c in "-_" for c in self.namespace):
            raise SettingsError(f"TOUCHPOINT_NAMESPACE={self.namespace!r}: use letters, digits, '-' and '_' only")
        from streams.demand.dimensions import parse_dimensions, parse_measures
        from streams.demand.series import parse_min_excess

        for parse, name in ((parse_dimensions, "demand_dimensions"), (parse_measures, "demand_measures"),
                            (parse_min_excess, "demand_min_excess")):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}={getattr(self, name)!r}: {exc}") from None
        if not (len(self.demand_currency) == 3 and self.demand_currency.isalpha()):
            raise SettingsError(f"{ENV_PREFIX}DEMAND_CURRENCY={self.demand_currency!r}: expected an ISO 4217 code such as CNY")
        for name in ("partitions", "replication_factor", "max_event_bytes", "batch_size", "dedup_ttl_s", "dedup_window_s", "demand_bucket_s",
                     "collector_rate_per_s", "collector_burst", "collector_max_batch_bytes", "collector_publish_timeout_s",
                     "max_record_bytes", "profile_max_bytes", "event_max_future_s", "event_max_past_s", "kafka_metadata_max_age_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be positive")
        if self.profile_max_bytes * 4 > self.max_record_bytes:
            raise SettingsError(f"TOUCHPOINT_PROFILE_MAX_BYTES={self.profile_max_bytes} must be at most a quarter of"
                                f" TOUCHPOINT_MAX_RECORD_BYTES={self.max_record_bytes} (a profile travels whole in a merge record)")
        if self.max_event_bytes * 4 > self.max_record_bytes:
            raise SettingsError(f"TOUCHPOINT_MAX_EVENT_BYTES={self.max_event_bytes} must be at most a quarter of"
                                f" TOUCHPOINT_MAX_RECORD_BYTES={self.max_record_bytes} (events travel in bundles and dead letters)")
        if not 0 <= self.dedup_shard_bits <= 32:
            raise SettingsError(f"TOUCHPOINT_DEDUP_SHARD_BITS={self.dedup_shard_bits}: between 0 and 32")
        for name in ("web_port", "collector_port", "stack_kafka_port", "stack_controller_port", "stack_redis_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}={getattr(self, name)}: a port is between 1 and 65535")
        if "SSL" in self.kafka_security_protocol and self.kafka_ssl_cafile and not os.path.isfile(self.kafka_ssl_cafile):
            raise SettingsError(f"TOUCHPOINT_KAFKA_SSL_CAFILE={self.kafka_ssl_cafile!r}: no such file")
        self._validate_demand()
        if self.identity_rules:
            from streams.identity.rules_file import RulesFileError, load_rules

            try:
                load_rules(self.identity_rules)
            except RulesFileError as exc:
                raise SettingsError(f"TOUCHPOINT_IDENTITY_RULES: {exc}") from None

    def _validate_demand(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from streams.demand.dimensions import parse_dimensions

        try:
            ZoneInfo(self.demand_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"TOUCHPOINT_DEMAND_TIMEZONE={self.demand_timezone!r}: not an IANA time zone (e.g. Asia/Shanghai, UTC)") from None
        try:
            parse_dimensions(self.demand_dimensions)
        except ValueError as exc:
            raise SettingsError(f"TOUCHPOINT_DEMAND_DIMENSIONS={self.demand_dimensions!r}: {exc}") from None

    def require_pii_key(self) -> None:
        """Refuse (:class:`SettingsError`) the public default PII key outside development mode."""
        if self.pii_key == DEV_PII_KEY and not self.dev_mode:
            raise SettingsError("TOUCHPOINT_PII_KEY is not set (the public default would let anyone reverse the stored email/phone "
                                "hashes and open dead letters): set a secret of your own, or TOUCHPOINT_DEV_MODE=true for local use")
        if not self.pii_key:
            raise SettingsError("TOUCHPOINT_PII_KEY is empty: set a secret of your own")

    @property
    def advertised_host(self) -> str:
        """The host name other workers reach this worker's HTTP server at (see ``web_advertised_host``)."""
        if self.web_advertised_host:
            return self.web_advertised_host
        return socket.gethostname() if self.web_host in ("0.0.0.0", "::", "") else self.web_host

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    # -- derived names -------------------------------------------------------------------------
    def topic(self, name: str) -> str:
        """The namespaced Kafka topic name for one of the project's logical topics."""
        return f"{self.namespace}.{name}"

    @property
    def app_id(self) -> str:
        """Faust app id = consumer group id; also prefixes table changelog topics."""
        return f"{self.namespace}.touchpoint"

    @property
    def ingest_group(self) -> str:
        """Consumer group of the ingest service's own consumer of the input topic (not Faust's
        group: Faust's assignor protocol cannot share a group with a plain consumer)."""
        return f"{self.app_id}-ingest"

    @property
    def redis_prefix(self) -> str:
        return f"{self.namespace}:"

    def to_env(self) -> dict[str, str]:
        """The ``TOUCHPOINT_*`` variables that rebuild these settings in a child process."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def describe(self) -> dict[str, Any]:
        """All settings with secrets masked (and credentials inside URLs), for start-up logs."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif f.metadata.get("url") and value:
                value = mask_url(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:  # the dataclass repr would print the PII key and passwords
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.describe().items())})"


def setting_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def _parse(var: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r}: {exc}") from None


def markdown_table() -> str:
    """The README's settings table, generated from the fields."""
    lines = ["| variable | default | description |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if f.name in ("stack_dir", "cache_dir", "data_dir"):
            default = str(default).replace(str(Path.home()), "~")
        shown = f"`{default}`" if default != "" else "(empty)"
        choices = f.metadata.get("choices")
        doc = f.metadata["doc"] + (f" One of: {', '.join(choices)}." if choices else "")
        lines.append(f"| `{ENV_PREFIX}{f.name.upper()}` | {shown} | {doc} |")
    return "\n".join(lines)


def update_readme(path: Path) -> bool:
    """Replace the settings table in a README with the generated one; True when it changed."""
    lines = path.read_text().split("\n")
    start = lines.index("| variable | default | description |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    new = lines[:start] + markdown_table().split("\n") + lines[end:]
    if new == lines:
        return False
    path.write_text("\n".join(new))
    return True


if __name__ == "__main__":  # pragma: no cover - documentation helper
    if "--markdown" in sys.argv:
        print(markdown_table())
    elif "--update-readme" in sys.argv:
        readme = Path(__file__).resolve().parents[1] / "README.md"
        print("README.md updated" if update_readme(readme) else "README.md already up to date")
