"""Activation on the real stack with two workers: a seeded population with known purchases and
consent; every audience's members (``touchpoint audience members``, read from the audiences topic)
equal an oracle computed from the raw events after the traffic (with merges), after every worker
is replaced (restart), and after erasures; every produced record matches its JSON Schema."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson
import pytest
from redis import Redis

from streams.cli.send import publish
from streams.events.model import Touchpoint
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.kafka.reading import read_to_end
from tests.fixtures.stack import free_port, run_cli
from tests.integration.test_profiles import metric_sum
from tests.unit.activation import oracle
from tests.unit.activation.test_population import DEFS, DEFS_TEXT, ORACLE_AUDIENCES
from touchpoint_tools.simulate.population import Population

pytestmark = pytest.mark.integration

DAY = 86_400_000
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def seeded_traffic(now_ms: int, n: int = 1500) -> list[dict]:
    """Population events spread over the last 110 days, a third of them carrying consent."""
    rng = random.Random(18)
    events = list(Population(80, seed=18).events(n, now_ms - 110 * DAY, 3000))
    for e in events:
        # at least an hour from a whole number of days before now: the worker evaluates minutes
        # after the oracle, and days_since must not tick over in between
        ts = now_ms - rng.randint(0, 110) * DAY - rng.randint(3_600_000, DAY - 3_600_000)
        e["timestamp"] = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        props = e.get("properties") or {}
        if e.get("event") == "Order Completed" and rng.random() < 0.4:  # known mask purchases
            props["category"] = "masks"
            for p in props.get("products") or ():
                p["category"] = "masks"
        if rng.random() < 0.35:
            e.setdefault("context", {})["consent"] = {"categoryPreferences": {"marketing": rng.random() < 0.75, "analytics": rng.random() < 0.6}}
    return events


def groups_of(settings, events: list[dict], now_ms: int) -> dict[str, list[dict]]:
    """The normalised events of each final profile (the identity graph's components)."""
    normalizer = Normalizer(PiiHasher(settings.pii_key), settings.default_phone_region)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    groups: dict[str, list[dict]] = defaultdict(list)
    for raw in events:
        t = normalizer.normalize(raw, now_ms)
        assert isinstance(t, Touchpoint)
        pids = {redis.get(f"{settings.namespace}:id:{k}:{v}") for k, v in t.identifiers} - {None}
        if not pids:  # an erased person's identifiers are gone from the graph
            continue
        assert len(pids) == 1
        groups[pids.pop()].append(t.to_dict())
    return groups


def expected(settings, events: list[dict], now_ms: int, erased: set[str] = frozenset()) -> dict[str, set[str]]:
    out = {name: set() for name in ORACLE_AUDIENCES}
    for pid, evs in groups_of(settings, events, now_ms).items():
        if pid in erased:
            continue
        values = oracle.traits(DEFS, evs, now_ms)
        consent = oracle.last_by_time(evs, "consent")
        consent = {k: v for k, v in (consent.get("categoryPreferences") or {}).items()} if "categoryPreferences" in consent else consent
        channels: dict[str, int] = defaultdict(int)
        for e in evs:
            channels[e.get("channel") or "unknown"] += 1
        for name, (purpose, rule) in ORACLE_AUDIENCES.items():
            if (purpose == "none" or consent.get(purpose) is True) and rule(values, channels):
                out[name].add(pid)
    return out


def members(settings) -> dict[str, set[str]]:
    out = {}
    for name in ORACLE_AUDIENCES:
        got = run_cli(settings, "audience", "members", name)
        assert got.returncode == 0, got.stderr.decode()
        out[name] = {line for line in got.stdout.decode().split("\n") if line}
    return out


def wait_idle(settings, *workers) -> None:
    idle = run_cli(settings, "wait-idle", "--timeout", "120", "--settle", "2")
    assert idle.returncode == 0, idle.stderr.decode() + "\n".join(w.log_tail() for w in workers)


def read_all(settings, logical: str) -> list:
    async def go() -> list:
        return [r async for r in read_to_end(settings, settings.topic(logical))]
    return asyncio.run(go())


def test_audiences_exact_after_traffic_restart_and_erasure(settings, start_worker, tmp_path):
    started = time.monotonic()
    defs = tmp_path / "activation.toml"
    defs.write_text(DEFS_TEXT)
    settings = settings.with_(traits=str(defs))
    now_ms = time.time_ns() // 1_000_000
    events = seeded_traffic(now_ms)

    w1 = start_worker(settings)
    w2 = start_worker(settings.with_(web_port=free_port()))
    for part in (events[:500], events[500:1000], events[1000:]):
        asyncio.run(publish(settings, settings.topic("touchpoints"), [orjson.dumps(e) for e in part]))
    wait_idle(settings, w1, w2)

    want = expected(settings, events, now_ms)
    assert all(want.values()), {k: len(v) for k, v in want.items()}  # every audience has members to get right
    assert members(settings) == want
    metrics = "".join(w.get("/metrics")[1].decode() for w in (w1, w2))
    assert metric_sum(metrics, "touchpoint_profile_records_total", outcome="absorbed") > 0  # merges happened
    assert metric_sum(metrics, "touchpoint_audience_changes_total", change="entered") >= sum(len(v) for v in want.values())

    customer_page_in_chromium(settings, w1, events, want, now_ms, tmp_path)

    # The members gauge (per worker, over the partitions it owns) adds up to the members.
    def gauge() -> dict[str, float]:
        text = "".join(w.get("/metrics")[1].decode() for w in (w1, w2))
        return {name: metric_sum(text, "touchpoint_audience_members", audience=name) for name in want}
    deadline = time.monotonic() + 30
    while gauge() != {name: len(pids) for name, pids in want.items()} and time.monotonic() < deadline:
        time.sleep(1)
    assert gauge() == {name: len(pids) for name, pids in want.items()}

    # Restart: every worker replaced; the recovered tables publish no change, members stay exact.
    w1.stop()
    w2.stop()
    before = len(read_all(settings, "audiences"))
    w3 = start_worker(settings.with_(web_port=free_port()))
    asyncio.run(publish(settings, settings.topic("touchpoints"), [orjson.dumps(e) for e in events[:200]]))  # duplicates
    wait_idle(settings, w3)
    assert len(read_all(settings, "audiences")) == before
    assert members(settings) == want
    # What the re-evaluation timer sends when a window slides: an activate control per profile,
    # processed in order by the profiles agent; nothing changed, so nothing is republished.
    live = sorted({pid for pids in want.values() for pid in pids})
    asyncio.run(publish(settings, settings.topic("profile-events"), [b'{"control":"activate"}'] * len(live), [p.encode() for p in live]))
    wait_idle(settings, w3)
    assert metric_sum(w3.get("/metrics")[1].decode(), "touchpoint_profile_records_total", outcome="reevaluated") == len(live)
    assert len(read_all(settings, "audiences")) == before and members(settings) == want

    # Erasure: erased people leave every audience at once; their updates become tombstones.
    profiles = {r.key.decode(): orjson.loads(r.value) for r in read_all(settings, "profile-updates") if r.value}
    victims = sorted({pid for pids in want.values() for pid in pids})[:4]
    for pid in victims:
        ident = next(f"{i['type']}:{i['value']}" for i in profiles[pid]["profile"]["identifiers"] if i["type"] not in ("email", "phone"))
        got = run_cli(settings, "erase", "--id", ident)
        assert got.returncode == 0, got.stderr.decode()
    wait_idle(settings, w3)
    after = {name: pids - set(victims) for name, pids in want.items()}
    assert members(settings) == after

    # Every record on the public topics matches its schema; the compacted view holds no erased profile.
    audience_schema = jsonschema.Draft7Validator(json.loads((SCHEMAS / "audience-change.v1.json").read_text()))
    update_schema = jsonschema.Draft7Validator(json.loads((SCHEMAS / "profile-update.v1.json").read_text()))
    for r in read_all(settings, "audiences"):
        audience_schema.validate(orjson.loads(r.value))
    latest: dict[str, dict | None] = {}
    for r in read_all(settings, "profile-updates"):
        value = None if r.value is None else orjson.loads(r.value)
        if value is not None:
            update_schema.validate(value)
        latest[r.key.decode()] = value
    for pid in victims:
        assert latest.get(pid, "absent") is None, pid
    print(f"\n[activation] {len(events)} events, members {({k: len(v) for k, v in want.items()})}, {time.monotonic() - started:.1f}s")


def customer_page_in_chromium(settings, worker, events, want, now_ms, tmp_path) -> None:
    """The customer page of an audience member, rendered by headless Chromium: audiences and
    computed traits as the oracle says, identifiers with emails and phones never shown raw."""
    from tests.integration.test_observability import render

    profiles = {r.key.decode(): orjson.loads(r.value)["profile"] for r in read_all(settings, "profile-updates")
                if r.value and orjson.loads(r.value)["type"] == "profile"}
    members_of = defaultdict(set)
    for name, pids in want.items():
        for pid in pids:
            members_of[pid].add(name)

    def ids(pid: str) -> set[str]:
        return {i["type"] for i in profiles[pid]["identifiers"]}

    pid = max((p for p in members_of if p in profiles and {"user_id", "email"} <= ids(p)), key=lambda p: (len(members_of[p]), p))
    user = next(i["value"] for i in profiles[pid]["identifiers"] if i["type"] == "user_id")
    person = next(p for p in Population(80, seed=18).people if p.user_id == user)
    dom = render(f"{worker.url}/customers?id=user_id:{user}", tmp_path / "chromium", tmp_path / "customer.png")
    text = " ".join(dom.text)
    assert dom.find("div", id="status")[0]["data-state"] == "ok", text
    assert dom.find("body", data_loaded="true")
    assert {a["data-audience"] for a in dom.find("li", **{"class": "audience"})} == members_of[pid]
    shown = {r["data-trait"]: r["data-value"] for r in dom.find("tr", **{"class": "trait"})}
    assert set(shown) == {t.name for t in DEFS.traits}
    for name, value in oracle.traits(DEFS, groups_of(settings, events, now_ms)[pid], now_ms).items():
        if value is None:
            assert shown[name] == "", name
        elif isinstance(value, str):
            assert shown[name] == value, name
        else:
            assert float(shown[name]) == value, name
    for email_like in (person.email, person.email.lower(), person.phone):
        assert email_like not in text and email_like not in str(dom.elements)
    masked = dom.find("tr", **{"class": "identifier", "data_type": "email"})
    assert masked and all(r["data-masked"] == "true" for r in masked)
    hashed = next(i["value"] for i in profiles[pid]["identifiers"] if i["type"] == "email")
    assert hashed not in text  # not even the keyed hash is shown whole
    assert (tmp_path / "customer.png").stat().st_size > 10_000
    # The data endpoint resolves identifiers like /profiles?id= does (streams/identity/lookup.py).
    assert worker.get(f"/customers/data?id=user_id:{user}")[0] == 200
    for query, status, says in (("", 400, b"missing query parameter id"), ("?id=nonsense", 400, b"TYPE:VALUE"),
                                ("?id=user_id:nobody-has-this", 404, b"no customer has this user_id")):
        got = worker.get(f"/customers/data{query}")
        assert got[0] == status and says in got[1], (query, got)
    print(f"\n[customer page] {pid}: audiences {sorted(members_of[pid])}, screenshot {tmp_path / 'customer.png'}")

