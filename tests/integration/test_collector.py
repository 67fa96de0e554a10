"""The HTTP collector on the real stack: the real Segment and RudderStack Python SDKs, unchanged,
send through ``touchpoint collect`` into the right profiles; kcat publishing straight to the input
topic works too; with Kafka unreachable the collector answers 503, never 200."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from streams.identity.identifiers import stored_identifier
from streams.identity.redis_graph import RedisIdentityGraph
from streams.identity.rules import IdentityRules
from streams.ingest.pii import PiiHasher
from streams.kafka.reading import read_to_end
from streams.kafka.topics import INPUT, PROFILE_EVENTS
from streams.profiles.bundle import decoded_items
from streams.settings import Settings
from tests.fixtures.stack import ROOT, free_port, run_cli

pytestmark = pytest.mark.integration

SEGMENT_KEY, RUDDER_KEY = "wk-segment-1", "wk-rudder-1"


class CollectorProcess:
    """``touchpoint collect`` as a subprocess on a free loopback port; logs shown on failure."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = {**os.environ, **settings.to_env()}
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "collect", "--port", str(self.port), *args],
                                     env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, key: str | None = None) -> tuple[int, dict, dict]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read()), dict(err.headers)

    def wait_listening(self, ready: bool, timeout_s: float = 60.0) -> None:
        """Until the HTTP port answers (and, with ``ready``, Kafka is connected)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = self.request("GET", "/readyz")
                if status == 200 or not ready:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"collector not {'ready' if ready else 'listening'} within {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_collector(tmp_path: Path):
    started: list[CollectorProcess] = []

    def start(settings: Settings, *args: str, ready: bool = True) -> CollectorProcess:
        collector = CollectorProcess(settings, tmp_path / f"collector-{len(started)}.log", *args)
        started.append(collector)
        collector.wait_listening(ready)
        return collector

    yield start
    for collector in started:
        collector.stop()


async def profiles_of(settings: Settings, idents: list[str]) -> dict[str, str | None]:
    """Current profile id of each ``TYPE:VALUE`` (raw values; email/phone are hashed here)."""
    redis = Redis.from_url(settings.redis_url)
    graph = RedisIdentityGraph(redis, settings.namespace, IdentityRules())
    hasher = PiiHasher(settings.pii_key)
    try:
        return {text: await graph.lookup(stored_identifier(text, hasher)) for text in idents}
    finally:
        await redis.aclose()


async def applied_events(settings: Settings) -> dict[str, dict]:
    """profile-events by message id, with profile ids forwarded to their survivors."""
    redis = Redis.from_url(settings.redis_url)
    graph = RedisIdentityGraph(redis, settings.namespace, IdentityRules())
    out: dict[str, dict] = {}
    try:
        async for record in read_to_end(settings, settings.topic(PROFILE_EVENTS), timeout_s=30):
            for _, event in decoded_items(record.key, record.value):
                if "message_id" in event and "control" not in event:
                    event["current_profile"] = await graph.current_profile(event["profile_id"])
                    out[event["message_id"]] = event
    finally:
        await redis.aclose()
    return out


def send_with_sdk(client, prefix: str, channel: str) -> None:  # noqa: ANN001 - either SDK's Client
    """An anonymous page view, a login that reveals the user and an email, then an order."""
    ctx = {"channel": channel}
    client.page(anonymous_id=f"{prefix}-anon", name="Home", category="landing", context=ctx, message_id=f"{prefix}-m1")
    client.identify(user_id=f"{prefix}-user", anonymous_id=f"{prefix}-anon", traits={"email": f" {prefix}.Ann@Example.com"},
                    context=ctx, message_id=f"{prefix}-m2")
    client.track(user_id=f"{prefix}-user", event="Order Completed", context=ctx, message_id=f"{prefix}-m3",
                 properties={"order_id": f"{prefix}-o1", "revenue": 19.8, "currency": "CNY",
                             "products": [{"product_id": "mask-n95", "category": "masks", "price": 3.3, "quantity": 6}]})
    client.flush()
    client.join()


def test_real_sdks_reach_the_right_profiles(settings, start_worker, start_collector):
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics.client import Client as SegmentClient

    settings = settings.with_(write_keys=f"{SEGMENT_KEY},{RUDDER_KEY}")
    start_worker(settings)
    collector = start_collector(settings)
    errors: list = []

    def on_error(exc, batch):  # noqa: ANN001 - the SDKs' callback signature
        errors.append((getattr(exc, "status", None), str(exc)))

    # The SDKs exactly as an app would configure them, only the host points at us.
    send_with_sdk(SegmentClient(SEGMENT_KEY, host=collector.url, on_error=on_error, max_retries=2, timeout=10), "seg", "web")
    send_with_sdk(RudderClient(RUDDER_KEY, host=collector.url, on_error=on_error, max_retries=2, timeout=10), "rud", "app")  # gzip on by default
    assert not errors, errors

    # A wrong key is refused and the SDK sees the 401 with its code and message.
    bad = SegmentClient("wk-wrong", host=collector.url, on_error=on_error, max_retries=0, timeout=10)
    bad.track(user_id="intruder", event="x", message_id="bad-1")
    bad.flush()
    bad.join()
    assert [status for status, _ in errors] == [401] and "invalid write key" in errors[0][1]

    idle = run_cli(settings, "wait-idle", "--timeout", "90")
    assert idle.returncode == 0, idle.stderr.decode()

    found = asyncio.run(profiles_of(settings, [
        "user_id:seg-user", "anonymous_id:seg-anon", "email:seg.ann@example.com", "order_id:seg-o1",
        "user_id:rud-user", "anonymous_id:rud-anon", "email:rud.ann@example.com", "order_id:rud-o1",
        "user_id:intruder",
    ]))
    seg, rud = found["user_id:seg-user"], found["user_id:rud-user"]
    dead = run_cli(settings, "dlq", "show", "--limit", "10").stdout.decode()
    assert not dead.strip(), f"dead letters:\n{dead}"
    assert seg and rud and seg != rud, found
    assert {found["anonymous_id:seg-anon"], found["email:seg.ann@example.com"], found["order_id:seg-o1"]} == {seg}, found
    assert {found["anonymous_id:rud-anon"], found["email:rud.ann@example.com"], found["order_id:rud-o1"]} == {rud}, found
    assert found["user_id:intruder"] is None

    events = asyncio.run(applied_events(settings))
    for prefix, pid, channel in (("seg", seg, "web"), ("rud", rud, "app")):
        for n in (1, 2, 3):
            event = events[f"{prefix}-m{n}"]
            assert event["current_profile"] == pid, event
            assert event["channel"] == channel  # RudderStack's channel "server" did not shadow context.channel
    assert "bad-1" not in events

    # The worker's profile view agrees (asks the worker over HTTP).
    got = run_cli(settings, "profile", "get", "--id", "user_id:rud-user", timeout_s=60)
    assert got.returncode == 0, got.stderr.decode()
    profile = json.loads(got.stdout)
    assert profile["profile_id"] == rud and profile["event_count"] == 3, profile
    assert profile["channels"] == {"app": 3}, profile


def test_kcat_publishes_json_lines_straight_to_the_input_topic(settings, start_worker, tmp_path):
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is missing: scripts/install-system-deps.sh installs Debian's kcat")
    start_worker(settings)
    lines = [
        {"type": "page", "messageId": "k1", "anonymousId": "kc-anon", "channel": "web", "name": "home"},
        {"type": "identify", "messageId": "k2", "anonymousId": "kc-anon", "userId": "kc-user", "channel": "web"},
        {"type": "track", "messageId": "k3", "userId": "kc-user", "event": "Order Completed", "channel": "pos",
         "context": {"externalIds": [{"id": "POS-KC", "type": "pos_card_id"}]}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in lines) + b"\n")
    bootstrap = settings.kafka_bootstrap
    result = subprocess.run([kcat, "-P", "-b", bootstrap, "-t", settings.topic(INPUT), "-l", str(path)],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    idle = run_cli(settings, "wait-idle", "--timeout", "90")
    assert idle.returncode == 0, idle.stderr.decode()
    found = asyncio.run(profiles_of(settings, ["user_id:kc-user", "anonymous_id:kc-anon", "pos_card_id:POS-KC"]))
    assert found["user_id:kc-user"] and len(set(found.values())) == 1, found
    events = asyncio.run(applied_events(settings))
    assert {"k1", "k2", "k3"} <= set(events)


def test_collector_end_to_end_errors_and_kafka_down(settings, start_collector):
    settings = settings.with_(write_keys="wk-1", collector_publish_timeout_s=3.0)
    collector = start_collector(settings)
    event = orjson.dumps({"type": "track", "messageId": "e1", "userId": "u1", "event": "x"})
    assert collector.request("POST", "/v1/track", event, key="wk-1")[:2] == (200, {"success": True})
    assert collector.request("POST", "/v1/track", event, key="wk-2")[0] == 401
    status, body, _ = collector.request("POST", "/v1/batch", orjson.dumps({"batch": [{"type": "track", "userId": "u"}]}), key="wk-1")
    assert status == 400 and body["errors"][0]["field"] == "messageId"
    records = asyncio.run(_read_input(settings))
    assert [(r.key, orjson.loads(r.value)["messageId"]) for r in records] == [(b"u1", "e1")]
    assert orjson.loads(records[0].value)["receivedAt"].endswith("Z")

    # A collector whose Kafka is unreachable keeps answering, with 503 and never 200.
    dead = settings.with_(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    down = start_collector(dead, ready=False)
    status, body, headers = down.request("POST", "/v1/track", event, key="wk-1")
    assert status == 503 and body["code"] == "unavailable" and headers["Retry-After"] == "1"
    assert down.request("GET", "/readyz")[0] == 503
    assert down.stop() == 0  # SIGTERM while still trying to connect: a clean exit

    # Without write keys it refuses to start, and says why.
    refused = run_cli(settings.with_(write_keys=""), "collect", "--port", str(free_port()), timeout_s=30)
    assert refused.returncode == 2 and b"TOUCHPOINT_WRITE_KEYS" in refused.stderr


async def _read_input(settings: Settings) -> list:
    return [r async for r in read_to_end(settings, settings.topic(INPUT), timeout_s=30)]
