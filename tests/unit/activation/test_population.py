"""A seeded population with known purchases through the profile + activation stages (a simulated
log with racing ingest workers, merges, crashes and replays): every audience's members, read from
the ``audiences`` records alone, equal an oracle computed from the raw events — after the traffic,
after a restart, after windows slide, and after erasures."""

import json
import random
import zlib
from pathlib import Path

import jsonschema
import orjson

from streams.activation import traits as TR
from streams.activation.definitions import parse
from streams.activation.stage import AUDIENCES, PROFILE_UPDATES, ActivationStage
from streams.events.model import Touchpoint
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles.profile import decode
from streams.profiles.stage import ProfileStage
from tests.unit.activation import oracle
from touchpoint_tools.simulate.population import Population

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
AUDIENCE_SCHEMA = jsonschema.Draft7Validator(json.loads((SCHEMAS / "audience-change.v1.json").read_text()))
UPDATE_SCHEMA = jsonschema.Draft7Validator(json.loads((SCHEMAS / "profile-update.v1.json").read_text()))
DAY = 86_400_000
T0 = 1_767_225_600_000
NOW = T0 + 130 * DAY + 15 * 3_600_000

DEFS_TEXT = """
[traits.mask_orders_90d]
kind = "count"
of = "orders"
window_days = 90
where = { category = "masks" }
[traits.orders_90d]
kind = "count"
of = "orders"
window_days = 90
[traits.revenue_30d]
kind = "sum"
of = "revenue"
window_days = 30
[traits.units_7d]
kind = "sum"
of = "units"
window_days = 7
[traits.categories_30d]
kind = "distinct"
of = "category"
window_days = 30
[traits.last_region]
kind = "last"
of = "region"
[traits.days_since_order]
kind = "days_since"
of = "orders"
[traits.recency]
kind = "score"
of = "days_since_order"
thresholds = [7, 30, 60]
higher_is_better = false

[audiences.repeat_mask_buyers_hubei]
when = "mask_orders_90d >= 2 and last_region == 'hubei'"
purpose = "marketing"
[audiences.big_spenders]
when = "revenue_30d >= 200"
purpose = "analytics"
[audiences.quiet_buyers]
when = "recency <= 2 and orders_90d >= 1"
purpose = "none"
[audiences.curious]
when = "categories_30d >= 3 or (channel.pos >= 4 and units_7d > 0)"
purpose = "marketing"
"""
DEFS = parse(DEFS_TEXT)

# The same audiences written by hand over the oracle's values (v traits, c consent, ch channels).
ORACLE_AUDIENCES = {
    "repeat_mask_buyers_hubei": ("marketing", lambda v, ch: v["mask_orders_90d"] >= 2 and v["last_region"] == "hubei"),
    "big_spenders": ("analytics", lambda v, ch: v["revenue_30d"] >= 200),
    "quiet_buyers": ("none", lambda v, ch: v["recency"] != 0 and v["recency"] <= 2 and v["orders_90d"] >= 1),
    "curious": ("marketing", lambda v, ch: v["categories_30d"] >= 3 or (ch.get("pos", 0) >= 4 and v["units_7d"] > 0)),
}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class Bus:
    """profile-events partitions + the table, processed like streams/profiles/agent.py with the
    activation hook: per record, settle each changed key, produce (land) its records, then write."""

    def __init__(self, clock, partitions=3):
        self.logs = [[] for _ in range(partitions)]
        self.pos = [0] * partitions
        self.committed = [0] * partitions
        self.table = {}
        self.history = [[] for _ in range(partitions)]
        self.stage = ActivationStage(ProfileStage(), DEFS, clock)
        self.audiences = []            # every record ever produced on <ns>.audiences
        self.updates = {}              # <ns>.profile-updates after compaction: key -> last value (None = tombstone)
        self.outcomes = {}
        self.kinds = {}                # profile-updates produced per type (profile, redirect, tombstone)

    def part(self, key):
        return zlib.crc32(key.encode()) % len(self.logs)

    def send(self, key, value):
        self.logs[self.part(key)].append((key, value))

    def step(self, p, items=1):
        """Process up to ``items`` records of partition p as one agent record (a bundle): decide
        each against the staged value, then settle every changed key once, produce, write."""
        staged = {}
        for _ in range(items):
            if self.pos[p] >= len(self.logs[p]):
                break
            key, value = self.logs[p][self.pos[p]]
            current = staged[key] if key in staged else self.table.get(key)
            d = self.stage.decide(key, current, value, self.pos[p])
            self.outcomes[d.outcome] = self.outcomes.get(d.outcome, 0) + 1
            for s in d.sends:
                self.send(s.key, s.value)
            if d.value is not None:
                staged[key] = d.value
            self.pos[p] += 1
        for key, value in staged.items():
            before = self.table.get(key)
            new, outs = self.stage.settle(key, before, value)
            for o in outs:
                record = None if o.value is None else orjson.loads(o.value)
                if o.topic == AUDIENCES:
                    AUDIENCE_SCHEMA.validate(record)
                    assert o.key == record["profile_id"]
                    self.audiences.append(record)
                else:
                    assert o.topic == PROFILE_UPDATES
                    if record is not None:
                        UPDATE_SCHEMA.validate(record)
                        assert o.key == record["profile_id"]
                    self.kinds[record["type"] if record else "tombstone"] = self.kinds.get(record["type"] if record else "tombstone", 0) + 1
                    self.updates[o.key] = record
            self.history[p].append((self.pos[p], key, before))
            self.table[key] = new
        return bool(staged) or self.pos[p] < len(self.logs[p])

    def commit(self, p):
        self.committed[p] = self.pos[p]
        self.history[p].clear()

    def crash(self, p, rng):
        lost = rng.randint(0, len(self.history[p]))
        for _, key, old in reversed(self.history[p][len(self.history[p]) - lost:]):
            if old is None:
                self.table.pop(key, None)
            else:
                self.table[key] = old
        del self.history[p][len(self.history[p]) - lost:]
        self.pos[p] = self.committed[p]

    def run(self, rng, crash_rate=0.0):
        while True:
            ready = [p for p in range(len(self.logs)) if self.pos[p] < len(self.logs[p])]
            if not ready:
                return
            p = rng.choice(ready)
            for _ in range(rng.randint(1, 3)):
                self.step(p, items=rng.randint(1, 8))
            r = rng.random()
            if r < crash_rate:
                self.crash(p, rng)
            elif r < 0.5:
                self.commit(p)

    def tick_all(self):
        """What the re-evaluation timer does: an ``activate`` control for every live profile."""
        for key, raw in list(self.table.items()):
            if not raw.startswith(b'{"tomb"'):
                self.send(key, orjson.dumps({"control": "activate"}))


def members_from_records(records):
    """Members per audience from the audiences records alone: per (profile, audience) the change
    with the highest sequence, copies (same idempotency key) counted once and checked identical."""
    by_key, latest = {}, {}
    for r in records:
        k = r["idempotency_key"]
        if k in by_key:
            assert {**by_key[k], "ts_ms": 0, "event_time": 0} == {**r, "ts_ms": 0, "event_time": 0}, "a key must name one change"
            continue
        by_key[k] = r
        pair = (r["profile_id"], r["audience"])
        if pair not in latest or r["sequence"] > latest[pair]["sequence"]:
            latest[pair] = r
    out = {name: set() for name in ORACLE_AUDIENCES}
    for (pid, aud), r in latest.items():
        if r["change"] == "entered":
            out[aud].add(pid)
    return out


def generate(seed, n, bus, rng):
    normalizer = Normalizer(PiiHasher("k"))
    graph = MemoryIdentityGraph(IdentityRules())
    raw_events = list(Population(40, seed=seed).events(n, T0, 5000))
    touchpoints = []
    for offset, raw in enumerate(raw_events):
        t = normalizer.normalize(raw, T0)
        assert isinstance(t, Touchpoint)
        t.ts_ms = NOW - rng.randint(0, 110) * DAY - rng.randint(0, DAY - 1)   # spread over ~4 months
        if rng.random() < 0.3:
            t.consent = {"marketing": rng.random() < 0.7, "analytics": rng.random() < 0.6}
        t.source = f"ns.touchpoints/{offset % 2}/{offset}"
        touchpoints.append(t)
    for t in touchpoints:
        [res] = graph.resolve_batch([ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms)])
        t.profile_id = res.profile_id
        for loser in res.merged:
            bus.send(loser, orjson.dumps({"control": "merge", "from": loser, "into": res.profile_id, "message_id": t.message_id, "ts_ms": t.ts_ms}))
        bus.send(res.profile_id, t.to_bytes())
        if rng.random() < 0.1:  # ingest re-emits (redelivery): a duplicate the stage must drop
            bus.send(res.profile_id, t.to_bytes())
        for _ in range(rng.randint(0, 4)):
            bus.step(rng.randrange(len(bus.logs)), items=rng.randint(1, 6))
    return graph, touchpoints


def expected(graph, touchpoints, now, erased=frozenset()):
    groups = {}
    for t in touchpoints:
        groups.setdefault(graph.lookup(t.identifiers[0]), []).append(t.to_dict())
    out = {name: set() for name in ORACLE_AUDIENCES}
    for pid, events in groups.items():
        if pid in erased:
            continue
        values = oracle.traits(DEFS, events, now)
        consent = oracle.last_by_time(events, "consent")
        channels = {}
        for e in events:
            channels[e.get("channel") or "unknown"] = channels.get(e.get("channel") or "unknown", 0) + 1
        for name, (purpose, rule) in ORACLE_AUDIENCES.items():
            if (purpose == "none" or consent.get(purpose) is True) and rule(values, channels):
                out[name].add(pid)
    return out


def test_members_are_exact_after_traffic_restart_slide_and_erasure():
    sizes = {name: 0 for name in ORACLE_AUDIENCES}
    for seed in range(6):
        rng = random.Random(seed)
        clock = Clock(NOW)
        bus = Bus(clock)
        graph, touchpoints = generate(seed, 400, bus, rng)
        bus.run(rng, crash_rate=0.15)
        assert bus.outcomes.get("merged", 0) > 0 and bus.outcomes.get("absorbed", 0) > 0
        want = expected(graph, touchpoints, NOW)
        assert members_from_records(bus.audiences) == want, seed
        for name, pids in want.items():
            sizes[name] += len(pids)

        # restart: a new stage over the recovered table; re-evaluation publishes no change
        n_records = len(bus.audiences)
        bus.stage = ActivationStage(ProfileStage(), DEFS, clock)
        bus.tick_all()
        bus.run(rng)
        assert len(bus.audiences) == n_records
        assert members_from_records(bus.audiences) == want

        # windows slide: 25 days later, with no new event
        clock.now = NOW + 25 * DAY
        bus.tick_all()
        bus.run(rng, crash_rate=0.15)
        later = expected(graph, touchpoints, clock.now)
        assert later != want, "the slide must change some audience"
        assert members_from_records(bus.audiences) == later, seed

        # erasure of a few people: they leave every audience, their ids leave profile-updates
        live = sorted({graph.lookup(t.identifiers[0]) for t in touchpoints})
        erased = set(rng.sample(live, 5)) | {pid for pids in later.values() for pid in list(pids)[:1]}
        for pid in sorted(erased):
            bus.send(pid, orjson.dumps({"control": "erase", "profile_id": pid, "ts_ms": clock.now}))
        bus.run(rng, crash_rate=0.15)
        final = expected(graph, touchpoints, clock.now, erased=frozenset(erased))
        assert members_from_records(bus.audiences) == final, seed
        for pid in erased:
            assert bus.updates.get(pid, "absent") is None, "an erased profile's last update is a tombstone"
            merged_in = [k for k, v in bus.updates.items() if v and v["type"] == "redirect" and v["redirect_to"] == pid]
            assert not merged_in, "redirects to an erased profile are tombstoned too"
        # every live profile's latest update is its current public profile
        for key, raw in bus.table.items():
            state = decode(raw)
            if "tomb" not in state:
                assert bus.updates[key]["type"] == "profile" and bus.updates[key]["profile"]["event_count"] == state["n"]
            elif state["tomb"] == "merged" and key not in erased:
                u = bus.updates.get(key)
                assert u is None or u["type"] == "redirect"
        assert all(bus.kinds.get(k, 0) > 0 for k in ("profile", "redirect", "tombstone")), bus.kinds  # all validated
        assert {r["reason"] for r in bus.audiences} == {"evaluated", "merged", "erased"}
    assert all(n > 0 for n in sizes.values()), sizes  # every audience had members to get right


def test_a_profile_changed_and_merged_away_in_one_record_carries_its_pending_traits():
    """B gets an event and is merged into A within one agent record (one bundle): the absorb sent
    to A must hold B's computed-trait state including that event, settled or not."""
    stage = ActivationStage(ProfileStage(), DEFS, lambda: NOW)

    def order(i, pid):
        return orjson.dumps({"message_id": f"m{i}", "type": "track", "ts_ms": NOW - i * DAY, "identifiers": [f"user_id:{pid}"],
                             "event": "Order Completed", "order_id": f"o{i}", "revenue": 100.0, "currency": "CNY",
                             "category": "masks", "region": "hubei", "profile_id": pid, "source": f"t/0/{i}"})

    b1 = stage.decide("B", None, order(1, "B"), 0).value
    b1, _ = stage.settle("B", None, b1)
    # one record: another event for B, then B's merge into A (nothing settled in between)
    staged = stage.decide("B", b1, order(2, "B"), 1).value
    merged = stage.decide("B", staged, orjson.dumps({"control": "merge", "from": "B", "into": "A", "message_id": "x", "ts_ms": NOW}), 2)
    assert merged.outcome == "merged"
    _, outs = stage.settle("B", b1, merged.value)
    assert {orjson.loads(o.value)["change"] for o in outs if o.topic == AUDIENCES} <= {"exited"}
    a = stage.decide("A", None, order(3, "A"), 0).value
    absorbed = stage.decide("A", a, merged.sends[0].value, 1)
    value, _ = stage.settle("A", None, absorbed.value)
    computed = TR.evaluate(decode(value)["ax"], DEFS, NOW)
    assert computed["mask_orders_90d"] == 3 and computed["revenue_30d"] == 300.0


def test_a_record_interrupted_between_decide_and_settle_leaves_nothing_behind():
    """The agent may stop a record after deciding its items (cancelled, sends not delivered): the
    replay decides the same events again and they must be folded once, not twice."""
    stage = ActivationStage(ProfileStage(), DEFS, lambda: NOW)
    e = orjson.dumps({"message_id": "m1", "type": "track", "ts_ms": NOW - DAY, "identifiers": ["user_id:k"], "event": "Order Completed",
                      "order_id": "o1", "revenue": 120.0, "currency": "CNY", "category": "masks", "profile_id": "K", "source": "t/0/1"})
    stored = None
    stage.decide("K", stored, e, 0)                 # interrupted: never settled, never written
    replay = stage.decide("K", stored, e, 0).value  # the replay, against the same stored value
    value, _ = stage.settle("K", stored, replay)
    assert TR.evaluate(decode(value)["ax"], DEFS, NOW)["orders_90d"] == 1


def test_a_replay_later_publishes_the_same_bytes_under_the_same_keys():
    """The worker dies after the audience change and profile update landed but before the table
    write; the replay runs 90 s later and settles the same input record again. Its records must be
    byte-identical (stamped with the record's Kafka time, not the clock): one idempotency key, one
    body. Stamped with the clock instead, the replay's bodies differ."""
    clock = [NOW]
    stage = ActivationStage(ProfileStage(), DEFS, lambda: clock[0])
    e = orjson.dumps({"message_id": "m1", "type": "track", "ts_ms": NOW - 40 * DAY, "identifiers": ["user_id:k"], "event": "Order Completed",
                      "order_id": "o1", "revenue": 120.0, "currency": "CNY", "category": "masks", "profile_id": "K", "source": "t/0/1"})
    record_ts = NOW - 2_000

    def settle_once(at_ms):
        value = stage.decide("K", None, e, 0).value
        return stage.settle("K", None, value, at_ms)

    value, first = settle_once(record_ts)
    assert {orjson.loads(o.value)["audience"] for o in first if o.topic == AUDIENCES} == {"quiet_buyers"}
    clock[0] += 90_000
    again_value, again = settle_once(record_ts)
    assert again == first and again_value == value
    _, unstamped = settle_once(None)
    assert [o.value for o in unstamped] != [o.value for o in first]
    assert [orjson.loads(o.value)["idempotency_key"] for o in unstamped if o.topic == AUDIENCES] == \
           [orjson.loads(o.value)["idempotency_key"] for o in first if o.topic == AUDIENCES]


def test_a_profiles_records_are_never_stamped_earlier_than_its_last_ones():
    """Input records of one partition come from producers whose clocks may differ: the next
    record's Kafka time can be earlier than the last one's. Receivers order profile updates by
    ts_ms, so a profile's stamps never go back (and stay a function of the stored value)."""
    stage = ActivationStage(ProfileStage(), DEFS, lambda: NOW)

    def event(i):
        return orjson.dumps({"message_id": f"m{i}", "type": "track", "ts_ms": NOW - 40 * DAY + i, "identifiers": ["user_id:k"],
                             "event": "Order Completed", "order_id": f"o{i}", "revenue": 120.0, "currency": "CNY",
                             "category": "masks", "profile_id": "K", "source": f"t/0/{i}"})

    first, outs1 = stage.settle("K", None, stage.decide("K", None, event(1), 0).value, NOW - 1_000)
    second, outs2 = stage.settle("K", first, stage.decide("K", first, event(2), 1).value, NOW - 5_000)  # a clock 4 s behind
    third, outs3 = stage.settle("K", second, stage.decide("K", second, event(3), 2).value, NOW + 2_000)
    stamps = [orjson.loads(o.value)["ts_ms"] for outs in (outs1, outs2, outs3) for o in outs if o.topic == PROFILE_UPDATES]
    assert stamps == [NOW - 1_000, NOW - 1_000, NOW + 2_000]
