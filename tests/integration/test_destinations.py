"""Destinations on the real stack: a real aiohttp receiver on loopback that is down (503) for a
while, then recovers; the worker is killed with SIGKILL mid-traffic. After recovery and a
``touchpoint destinations redrive`` every change on the public streams reached the receiver, once
per idempotency key, signed; the Kafka-topic destination got every change as well."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from streams.activation.destinations import idempotency_key_for, verify
from streams.cli.send import publish
from streams.kafka.reading import read_to_end
from tests.fixtures.stack import free_port, run_cli
from tests.integration.test_activation import expected as expected_members
from tests.integration.test_activation import members, seeded_traffic
from tests.unit.activation.test_population import DEFS_TEXT

pytestmark = pytest.mark.integration
SECRET = "webhook-test-secret"


class Receiver:
    """A webhook receiver in its own thread and loop: 503 while ``down``, else 200 (signature checked)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.down = True
        self.accepted: dict[str, list[bytes]] = defaultdict(list)
        self.refused = 0
        self.bad_signatures = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            if not verify(SECRET, request.headers.get("X-Touchpoint-Timestamp", ""), body, request.headers.get("X-Touchpoint-Signature", "")):
                self.bad_signatures += 1
                return web.Response(status=401)
            if self.down:
                self.refused += 1
                return web.Response(status=503)
            key = request.headers["X-Touchpoint-Idempotency-Key"]
            assert orjson.loads(body)["idempotency_key"] == key
            self.accepted[key].append(body)
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def public_keys(settings) -> dict[str, bytes | None]:
    """idempotency key -> value of every record on the public streams (what must be delivered)."""
    async def go() -> dict[str, bytes | None]:
        out = {}
        for stream in ("audiences", "profile-updates"):
            async for r in read_to_end(settings, settings.topic(stream)):
                record = None if r.value is None else orjson.loads(r.value)
                out[idempotency_key_for(stream, record, f"{r.topic}/{r.partition}/{r.offset}")] = r.value
        return out
    return asyncio.run(go())


def kafka_destination_keys(settings) -> set[str]:
    async def go() -> set[str]:
        return {orjson.loads(r.value)["idempotency_key"] async for r in read_to_end(settings, settings.topic("crm-inbox"))}
    return asyncio.run(go())


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_receiver_down_then_up_and_a_worker_killed_gets_every_change_once(settings, start_worker, tmp_path: Path):
    receiver = Receiver()
    try:
        defs = tmp_path / "activation.toml"
        defs.write_text(DEFS_TEXT + f'''
[destinations.crm]
kind = "webhook"
url = "http://127.0.0.1:{receiver.port}/hook"
max_attempts = 3
backoff_s = 0.05
max_backoff_s = 0.2

[destinations.inbox]
kind = "kafka"
topic = "crm-inbox"

[destinations.ads]
kind = "kafka"
topic = "ads-inbox"
purpose = "marketing"
''')
        settings = settings.with_(traits=str(defs), webhook_secret=SECRET)
        now_ms = time.time_ns() // 1_000_000
        events = seeded_traffic(now_ms, n=900)
        w1 = start_worker(settings)
        asyncio.run(publish(settings, settings.topic("touchpoints"), [orjson.dumps(e) for e in events[:300]]))
        wait_for(lambda: dead_letters(settings) >= 30, 90, "the outage dead-lettered nothing")
        time.sleep(2.0)  # the forwarder commits past its dead letters
        asyncio.run(publish(settings, settings.topic("touchpoints"), [orjson.dumps(e) for e in events[300:600]]))
        time.sleep(1.0)
        w1.stop(signal.SIGKILL)  # mid-traffic, uncommitted work everywhere
        receiver.down = False     # the receiver recovers while no worker runs
        w2 = start_worker(settings.with_(web_port=free_port()))
        asyncio.run(publish(settings, settings.topic("touchpoints"), [orjson.dumps(e) for e in events[600:]]))
        idle = run_cli(settings, "wait-idle", "--timeout", "120", "--settle", "2")
        assert idle.returncode == 0, idle.stderr.decode() + w2.log_tail()

        # The kill -9 lost no audience change: members exact against the raw-event oracle.
        want = expected_members(settings, events, now_ms)
        assert members(settings) == want and any(want.values())
        expected = public_keys(settings)
        wait_for(lambda: destination_lag(settings, "crm") == 0, 120, "the forwarder did not catch up")
        missing_before = len(expected.keys() - receiver.accepted.keys())
        assert missing_before > 0, "the outage must have left some deliveries to the dead-letter topic only"
        redriven = run_cli(settings, "destinations", "redrive", "--destination", "crm")
        assert redriven.returncode == 0, redriven.stderr.decode()

        assert receiver.bad_signatures == 0
        assert set(receiver.accepted) == set(expected), (len(set(expected) - set(receiver.accepted)), len(set(receiver.accepted) - set(expected)))
        for _key, bodies in receiver.accepted.items():
            assert len({b for b in bodies}) == 1, "one idempotency key, one change"
        copies = sum(len(b) for b in receiver.accepted.values()) - len(receiver.accepted)
        wait_for(lambda: kafka_destination_keys(settings) >= set(expected), 60, "kafka destination incomplete")
        check_consented_destination(settings, expected)
        again = run_cli(settings, "destinations", "redrive")  # nothing left: a second redrive sends nothing
        assert again.returncode == 0 and "crm: 0 delivered" in again.stdout.decode(), again.stdout.decode()
        print(f"\n[destinations] {len(expected)} changes, {receiver.refused} refused while down, {missing_before} dead-lettered then redriven,"
              f" {copies} re-deliveries after kill -9 (same keys)")
    finally:
        receiver.close()


def check_consented_destination(settings, expected: dict[str, bytes | None]) -> None:
    """The "ads" destination (purpose marketing) got exactly: the marketing audiences' changes,
    the profile updates of people whose marketing consent is true, a withheld notice for the
    others, and erasure tombstones."""
    async def go() -> dict[str, dict]:
        return {(b := orjson.loads(r.value))["idempotency_key"]: b async for r in read_to_end(settings, settings.topic("ads-inbox"))}

    want: dict[str, str] = {}
    for key, value in expected.items():
        record = None if value is None else orjson.loads(value)
        if record is not None and "audience" in record:
            if record["purpose"] == "marketing":
                want[key] = "audience"
        elif record is None or record.get("type") != "profile":
            want[key] = "other"
        else:
            want[key] = "profile" if record["profile"]["consent"].get("marketing") is True else "withheld"
    wait_for(lambda: set(asyncio.run(go())) >= set(want), 60, "ads destination incomplete")
    got = asyncio.run(go())
    assert set(got) == set(want), (len(set(got) - set(want)), len(set(want) - set(got)))
    kinds = defaultdict(int)
    for key, body in got.items():
        record, kind = body["record"], want[key]
        kinds[kind] += 1
        if kind == "withheld":
            assert record["type"] == "withheld" and record["purpose"] == "marketing" and "profile" not in record
        elif kind == "profile":
            assert record["profile"]["consent"]["marketing"] is True
    assert kinds["audience"] and kinds["profile"] and kinds["withheld"], dict(kinds)
    print(f"\n[consent] ads (marketing): {dict(kinds)}")


def dead_letters(settings) -> int:
    async def go() -> int:
        return len([1 async for _ in read_to_end(settings, settings.topic("destinations.dlq"))])
    return asyncio.run(go())


def destination_lag(settings, name: str) -> int:
    """Records of the public streams not yet committed by the destination's consumer group."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.kafka.client import client_options
    from streams.kafka.reading import partitions_of
    from streams.kafka.topics import group_offsets

    async def go() -> int:
        admin = AIOKafkaAdminClient(**client_options(settings))
        consumer = AIOKafkaConsumer(**client_options(settings), group_id=None)
        await admin.start()
        await consumer.start()
        try:
            tps = await partitions_of(admin, [settings.topic("audiences"), settings.topic("profile-updates")])
            ends = await consumer.end_offsets(tps)
            committed = await group_offsets(admin, f"{settings.namespace}.destinations.{name}")
            return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps)
        finally:
            await consumer.stop()
            await admin.close()
    return asyncio.run(go())
