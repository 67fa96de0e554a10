"""Hostile input that used to lose applied events or poison state for good (issue 21), on a
private stack through real workers, loopback only, every wait bounded.

- High 1: 40 valid identify calls with a 30,000-character trait name made one profile value pass
  Kafka's 1 MiB record limit: the changelog write was refused (one "Future exception was never
  retrieved" log line), and after a restart the profile had 34 of its 40 events. Merging that
  profile into another then wedged its whole profile-events partition.
- High 2: 8 events dated 2999 moved the demand clock (kept in its changelog) and a profile's
  last_seen to 2999; every real count after them was "late".
- Medium 7: a throwaway event from one write key with the messageId of a real purchase sent
  with another write key made the purchase a duplicate, never applied.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
import pytest

from streams.kafka.reading import read_to_end
from tests.system.test_crash import metric
from tests.system.verifier import dump_profiles, publish_records, wait_idle

pytestmark = [pytest.mark.system, pytest.mark.integration]

NAME_CHARS = 30_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _identify(i: int, user: str) -> bytes:
    name = f"t{i:03d}" + "n" * NAME_CHARS  # a valid trait name, just long
    raw = orjson.dumps({"type": "identify", "messageId": f"{user}-id-{i}", "userId": user,
                        "timestamp": _iso(time.time_ns() // 1_000_000 - 120_000 + i * 1000), "traits": {name: "v", "plan": f"p{i}"}})
    assert len(raw) < 32_768  # under TOUCHPOINT_MAX_EVENT_BYTES: accepted
    return raw


def _track(mid: str, user: str | None = None, anon: str | None = None, ts: str | None = None, **extra: object) -> bytes:
    ev: dict[str, object] = {"type": "track", "messageId": mid, "event": "Product Viewed", "channel": "web",
                             "timestamp": ts or _iso(time.time_ns() // 1_000_000 - 30_000),
                             "properties": {"region": "hubei", "products": [{"product_id": "sku-1", "category": "masks"}]}}
    if user:
        ev["userId"] = user
    if anon:
        ev["anonymousId"] = anon
    ev.update(extra)
    return orjson.dumps(ev)


def _profile(settings, ident: str) -> dict:
    """The live profile holding ``ident`` (raw user_id/anonymous_id), read from the profiles
    changelog as a recovering worker reads it (``touchpoint profiles dump``). Not over HTTP: a
    worker whose first assignment ran before Faust created the changelog topic answers 503 for
    its lifetime (seen twice here; a Faust start-up race this test is not about)."""
    matches = [p for p in dump_profiles(settings).values()
               if any(f"{i['type']}:{i['value']}" == ident for i in p["identifiers"])]
    assert len(matches) == 1, (ident, len(matches))
    return matches[0]


def _no_silent_send_failure(worker, refusals_expected: bool = False) -> None:
    log = worker.log_path.read_text(errors="replace")
    assert "Future exception was never retrieved" not in log, worker.log_tail(40)
    assert refusals_expected or "MessageSizeTooLarge" not in log, worker.log_tail(40)


def test_oversized_trait_names_through_a_worker_and_a_restart(system_stack, sys_settings, start_worker):
    started = time.monotonic()
    worker = start_worker(sys_settings)
    publish_records(sys_settings, [_identify(i, "big") for i in range(40)])
    wait_idle(sys_settings, worker, timeout_s=120)
    text = worker.get("/metrics")[1].decode()
    worker.stop()
    # A new worker recovers the table from the changelog alone: every applied event must be there.
    start_worker(sys_settings)  # recovers from the changelog and is ready
    got = _profile(sys_settings, "user_id:big")
    assert got["event_count"] == 40, got["event_count"]  # was 34: six applied events lost
    assert got["traits"] == {"plan": "p39"}
    _no_silent_send_failure(worker)
    assert metric(text, "touchpoint_profile_trimmed_total", part="trait_name") == 40
    assert metric(text, "touchpoint_send_failures_total") == 0
    sizes = [len(orjson.dumps(p)) for p in dump_profiles(sys_settings).values()]
    assert sizes and max(sizes) < 64 * 1024
    print(f"\n[oversized names] 40 identify calls x {NAME_CHARS}-char trait name -> 40 events after restart,"
          f" largest rendered profile {max(sizes)} B; {time.monotonic() - started:.0f}s")


def test_merging_a_large_profile_never_wedges_its_partition(system_stack, sys_settings, start_worker):
    """The survivor is the older profile, so the one with 40 huge events is the merge's loser:
    its whole state travels in the absorb record. Afterwards 100 other people's events must all
    be applied (about a quarter of them live on the same profile-events partition)."""
    started = time.monotonic()
    worker = start_worker(sys_settings)
    publish_records(sys_settings, [_track("x-0", anon="anon-x")])  # the older profile: the survivor
    wait_idle(sys_settings, worker, timeout_s=90)
    publish_records(sys_settings, [_identify(i, "big") for i in range(40)])
    wait_idle(sys_settings, worker, timeout_s=90)
    publish_records(sys_settings, [_track("link", user="big", anon="anon-x")])
    others = [_track(f"o{i}", user=f"other{i}") for i in range(100)]
    publish_records(sys_settings, others)
    wait_idle(sys_settings, worker, timeout_s=90)  # before the fix: never idle, the partition retried for ever
    profiles = dump_profiles(sys_settings)
    merged = _profile(sys_settings, "anonymous_id:anon-x")
    assert merged["event_count"] == 42 and _profile(sys_settings, "user_id:big")["profile_id"] == merged["profile_id"]
    assert len(merged["merged_from"]) == 1
    others = [p for p in profiles.values() if any(i["value"].startswith("other") for i in p["identifiers"])]
    assert len(others) == 100 and all(p["event_count"] == 1 for p in others)
    status, body = worker.get("/readyz")
    assert status == 200 and orjson.loads(body)["stuck_s"] == 0, body
    text = worker.get("/metrics")[1].decode()
    assert metric(text, "touchpoint_profile_records_total", outcome="absorbed") == 1
    assert metric(text, "touchpoint_profile_records_total", outcome="error") == 0
    assert metric(text, "touchpoint_partition_stuck_seconds") == 0
    _no_silent_send_failure(worker)
    print(f"\n[poison merge] 40-event profile merged (absorb bounded), 100 others applied; {time.monotonic() - started:.0f}s")


async def _demand_clocks(settings) -> list[dict]:
    out = []
    async for record in read_to_end(settings, f"{settings.app_id}-demand_clock-changelog"):
        if record.value:
            out.append(orjson.loads(record.value))
    return out


def test_far_future_events_advance_no_clock(system_stack, sys_settings, start_worker):
    started = time.monotonic()
    worker = start_worker(sys_settings)
    poison = [_track(f"future-{i}", user="timetraveller", ts="2999-01-01T00:00:00Z") for i in range(8)]
    publish_records(sys_settings, poison)
    wait_idle(sys_settings, worker, timeout_s=90)
    now = time.time_ns() // 1_000_000
    normal = [_track(f"n{i}", user=f"shopper{i % 40}", ts=_iso(now - 120_000 + i * 20)) for i in range(400)]
    publish_records(sys_settings, normal)
    wait_idle(sys_settings, worker, timeout_s=90)
    horizon = time.time_ns() // 1_000_000 + 300_000  # TOUCHPOINT_EVENT_MAX_FUTURE_S, the default
    text = worker.get("/metrics")[1].decode()
    assert metric(text, "touchpoint_events_total", outcome="applied") == 408
    assert metric(text, "touchpoint_demand_late_counts_total") == 0  # was: the real counts late
    clocks = asyncio.run(_demand_clocks(sys_settings))
    assert clocks and all(c["max_b"] <= horizon and c["closed"] <= horizon for c in clocks), clocks
    last_seen = _profile(sys_settings, "user_id:timetraveller")["last_seen"]
    assert last_seen < _iso(horizon), last_seen  # was 2999-01-01
    assert metric(text, "touchpoint_event_time_corrected_total", reason="future") == 8
    print(f"\n[far future] 8 events dated 2999 applied at their receive time; {len(clocks)} clock writes, all before"
          f" now + 300s; 0 late counts of 400 normal events; {time.monotonic() - started:.0f}s")


def test_the_same_message_id_from_two_write_keys(system_stack, sys_settings, start_worker, tmp_path):
    from tests.integration.test_collector import CollectorProcess

    started = time.monotonic()
    settings = sys_settings.with_(write_keys="wk-throwaway,wk-shop")
    worker = start_worker(settings)
    collector = CollectorProcess(settings, tmp_path / "collector.log")
    try:
        collector.wait_listening(ready=True)
        throwaway = _track("order-0001", user="tester")
        purchase = orjson.dumps({"type": "track", "messageId": "order-0001", "event": "Order Completed", "userId": "buyer",
                                 "properties": {"order_id": "o-1", "revenue": 25.0, "currency": "CNY"}})
        assert collector.request("POST", "/v1/track", throwaway, key="wk-throwaway")[0] == 200
        wait_idle(settings, worker, timeout_s=90)  # the throwaway is applied first
        assert collector.request("POST", "/v1/track", purchase, key="wk-shop")[0] == 200
        assert collector.request("POST", "/v1/track", purchase, key="wk-shop")[0] == 200  # an SDK retry: a duplicate
        wait_idle(settings, worker, timeout_s=90)
    finally:
        collector.stop()
    buyer = _profile(settings, "user_id:buyer")
    assert buyer["event_count"] == 1 and buyer["orders"]["count"] == 1, buyer  # was: 404, the purchase a "duplicate"
    assert _profile(settings, "user_id:tester")["event_count"] == 1
    text = worker.get("/metrics")[1].decode()
    assert metric(text, "touchpoint_events_total", outcome="applied") == 2
    assert metric(text, "touchpoint_events_total", outcome="duplicate") == 1
    print(f"\n[dedup per source] same messageId from two write keys: both applied, the retry a duplicate; {time.monotonic() - started:.0f}s")


def test_a_producer_limit_above_the_brokers_refuses_to_start(system_stack, sys_settings):
    from tests.fixtures.stack import run_cli

    result = run_cli(sys_settings.with_(max_record_bytes=4 * 1024 * 1024), "worker", timeout_s=90)
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2, result.stderr.decode()[-1500:]
    assert err[-1].startswith("touchpoint worker: the producer may send records of up to 4194304 bytes")
    assert "message.max.bytes" in err[-1] and "Traceback" not in result.stderr.decode()


def test_a_changelog_write_kafka_refuses_is_never_silent(system_stack, sys_settings, start_worker):
    """The changelog topic's limit is lowered under a running worker (an operator error the start
    check cannot see): the refused profile write is counted, dead-lettered with its reason, the
    commit goes on and the worker stays ready. Before: one "Future exception was never retrieved"
    line, nothing else."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.kafka.client import client_options
    from streams.profiles.agent import changelog_topic
    from tests.system.verifier import dead_letters

    started = time.monotonic()
    worker = start_worker(sys_settings)

    async def lower_limit() -> None:
        admin = AIOKafkaAdminClient(**client_options(sys_settings))
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, changelog_topic(sys_settings.app_id),
                                                      {"max.message.bytes": "2000"})])
        finally:
            await admin.close()

    asyncio.run(lower_limit())
    time.sleep(2)  # the broker applies topic config changes asynchronously
    traits = lambda i: {f"trait{i}{k}": "v" * 200 for k in range(6)}  # noqa: E731 - ~1.3 KB of traits per event
    publish_records(sys_settings, [orjson.dumps({"type": "identify", "messageId": f"big-{i}", "userId": "big", "traits": traits(i)})
                                   for i in range(5)])
    wait_idle(sys_settings, worker, timeout_s=90)
    letters = [h for h in dead_letters(sys_settings) if h["tp.reason"] == "refused_by_broker"]
    assert letters and all(h["tp.stage"] == "profiles" for h in letters), dead_letters(sys_settings)
    text = worker.get("/metrics")[1].decode()
    assert metric(text, "touchpoint_send_failures_total", kind="changelog") >= 1
    assert metric(text, "touchpoint_dead_letters_total", reason="refused_by_broker") == len(letters)
    status, body = worker.get("/readyz")
    assert status == 200 and orjson.loads(body)["stuck_s"] == 0, body
    _no_silent_send_failure(worker, refusals_expected=True)
    print(f"\n[changelog refused] {len(letters)} dead letter(s) refused_by_broker, send failures counted, worker ready;"
          f" {time.monotonic() - started:.0f}s")
