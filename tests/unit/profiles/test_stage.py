"""Stage decisions for one record, and a simulated log with partitions, races, crashes and replays."""

import random
import zlib

import orjson

from streams.events.model import Touchpoint
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles.profile import decode, fold, new_profile, render
from streams.profiles.stage import MAX_HOPS, ProfileStage
from touchpoint_tools.simulate.population import Population

T0 = 1_767_225_600_000


def event(i, pid="A", part=0, offset=None, **extra):
    e = {"message_id": f"m{i}", "type": "track", "ts_ms": T0 + i * 1000, "received_at_ms": T0, "identifiers": [f"user_id:{pid}"],
         "channel": "web", "event": "Product Viewed", "profile_id": pid, "source": f"ns.touchpoints/{part}/{i if offset is None else offset}"}
    e.update(extra)
    return orjson.dumps(e)


def merge_rec(loser, survivor):
    return orjson.dumps({"control": "merge", "from": loser, "into": survivor, "message_id": "mm", "ts_ms": T0})


def test_event_applied_then_redelivered_copy_is_a_duplicate():
    stage = ProfileStage()
    d = stage.decide("A", None, event(1), offset=0)
    assert d.outcome == "applied" and decode(d.value)["n"] == 1
    again = stage.decide("A", d.value, event(1), offset=7)  # ingest re-emitted it (same source)
    assert again.outcome == "duplicate" and again.value is None
    assert stage.decide("A", d.value, event(2), offset=8).outcome == "applied"


def test_the_message_id_window_keeps_the_last_recent_ids_events():
    # No parsable source: only the message-id window (rc) recognises a re-emitted event.
    stage = ProfileStage()
    value = None
    for i in range(40):
        value = stage.decide("A", value, event(i, source=None), offset=i).value
    assert len(decode(value)["rc"]) == stage.limits.recent_ids == 16
    oldest_kept = 40 - stage.limits.recent_ids
    assert stage.decide("A", value, event(oldest_kept, source=None), offset=99).outcome == "duplicate"
    assert stage.decide("A", value, event(oldest_kept - 1, source=None), offset=99).outcome == "applied"


def test_own_replay_after_crash_is_skipped_by_offset():
    stage = ProfileStage()
    d = stage.decide("A", None, event(1), offset=5)
    assert stage.decide("A", d.value, event(9), offset=5).outcome == "replayed"


def test_merge_sends_state_and_leaves_a_forwarding_tombstone():
    stage = ProfileStage()
    b = stage.decide("B", None, event(1, pid="B"), offset=0).value
    d = stage.decide("B", b, merge_rec("B", "A"), offset=1)
    assert d.outcome == "merged" and decode(d.value) == {"tomb": "merged", "into": "A", "at": T0, "po": 1}
    [send] = d.sends
    assert send.key == "A" and send.must_land
    absorb = orjson.loads(send.value)
    assert absorb["control"] == "absorb" and absorb["from"] == "B" and absorb["state"]["n"] == 1


def test_merge_then_late_event_for_b_is_forwarded_and_counted_once():
    stage = ProfileStage()
    b = stage.decide("B", None, event(1, pid="B"), offset=0).value
    merged = stage.decide("B", b, merge_rec("B", "A"), offset=1)
    late = stage.decide("B", merged.value, event(2, pid="B"), offset=2)
    assert late.outcome == "forwarded" and late.value is None and late.sends[0].key == "A"
    a = stage.decide("A", None, event(3, pid="A", part=1), offset=0).value
    a = stage.decide("A", a, merged.sends[0].value, offset=1).value
    a = stage.decide("A", a, late.sends[0].value, offset=2).value
    # the forwarded copy again (B's partition replayed), and ingest re-emitting event 1 via B
    assert stage.decide("A", a, late.sends[0].value, offset=3).outcome == "duplicate"
    refwd = stage.decide("B", merged.value, event(1, pid="B"), offset=3)
    assert stage.decide("A", a, refwd.sends[0].value, offset=4).outcome == "duplicate"
    state = decode(a)
    assert state["n"] == 3 and state["ab"] == ["B"]


def test_absorb_replayed_twice_folds_once():
    stage = ProfileStage()
    b = stage.decide("B", None, event(1, pid="B"), offset=0).value
    absorb = stage.decide("B", b, merge_rec("B", "A"), offset=1).sends[0].value
    a = stage.decide("A", None, absorb, offset=0).value
    assert decode(a)["n"] == 1
    for offset in (1, 2):
        assert stage.decide("A", a, absorb, offset=offset).outcome == "absorb_duplicate"


def test_absorb_reaching_a_merged_survivor_moves_on():
    stage = ProfileStage()
    b = stage.decide("B", None, event(1, pid="B"), offset=0).value
    absorb = stage.decide("B", b, merge_rec("B", "A"), offset=1).sends[0].value
    a_tomb = stage.decide("A", None, merge_rec("A", "C"), offset=0).value
    d = stage.decide("A", a_tomb, absorb, offset=1)
    assert d.outcome == "forwarded" and d.sends[0].key == "C"
    c = stage.decide("C", None, d.sends[0].value, offset=0)
    assert c.outcome == "absorbed" and decode(c.value)["ab"] == ["B"]


def test_merge_of_unknown_profile_and_duplicate_merge():
    stage = ProfileStage()
    d = stage.decide("B", None, merge_rec("B", "A"), offset=0)
    assert d.outcome == "merged" and d.sends == ()
    assert stage.decide("B", d.value, merge_rec("B", "A"), offset=1).outcome == "merge_duplicate"


def test_erase_drops_later_events_and_reaches_the_survivor():
    stage = ProfileStage()
    a = stage.decide("A", None, event(1), offset=0).value
    erased = stage.decide("A", a, orjson.dumps({"control": "erase", "profile_id": "A"}), offset=1)
    assert erased.outcome == "erased" and decode(erased.value)["tomb"] == "erased"
    assert stage.decide("A", erased.value, event(2), offset=2).outcome == "erased_dropped"
    assert stage.decide("A", erased.value, merge_rec("A", "C"), offset=3).outcome == "erased_dropped"
    b_tomb = stage.decide("B", None, merge_rec("B", "A"), offset=0).value
    fwd = stage.decide("B", b_tomb, orjson.dumps({"control": "erase", "profile_id": "B"}), offset=1)
    assert fwd.outcome == "erased" and fwd.sends[0].key == "A" and fwd.sends[0].must_land
    assert stage.decide("A", erased.value, fwd.sends[0].value, offset=4).outcome == "erase_duplicate"


def test_invalid_records_and_forwarding_loops():
    stage = ProfileStage()
    assert stage.decide("A", None, b"{not json", offset=0).outcome == "invalid"
    assert stage.decide("A", None, b'{"control":"teleport"}', offset=0).outcome == "invalid"
    assert stage.decide("A", None, orjson.dumps({"control": "merge", "from": "A", "into": "A"}), offset=0).outcome == "invalid"
    tomb = stage.decide("A", None, merge_rec("A", "B"), offset=0).value
    looping = orjson.loads(event(1))
    looping["fwd"] = MAX_HOPS
    assert stage.decide("A", tomb, orjson.dumps(looping), offset=1).outcome == "invalid"


# -- a simulated deployment: ingest + identity twin + partitioned log + crashing profile workers ----

class Bus:
    """profile-events as partitions of (key, value); the table with a durable changelog view."""

    def __init__(self, partitions=3):
        self.logs = [[] for _ in range(partitions)]
        self.pos = [0] * partitions
        self.committed = [0] * partitions
        self.table = {}
        self.history = [[] for _ in range(partitions)]  # (offset, key, old value) of uncommitted writes
        self.stage = ProfileStage()
        self.outcomes = {}

    def part(self, key):
        return zlib.crc32(key.encode()) % len(self.logs)

    def send(self, key, value):
        self.logs[self.part(key)].append((key, value))

    def step(self, p):
        """Process one record of partition p, like the agent (sends first, then the write)."""
        if self.pos[p] >= len(self.logs[p]):
            return False
        key, value = self.logs[p][self.pos[p]]
        d = self.stage.decide(key, self.table.get(key), value, self.pos[p])
        self.outcomes[d.outcome] = self.outcomes.get(d.outcome, 0) + 1
        for s in d.sends:
            self.send(s.key, s.value)
        if d.value is not None:
            self.history[p].append((self.pos[p], key, self.table.get(key)))
            self.table[key] = d.value
        self.pos[p] += 1
        return True

    def commit(self, p):
        self.committed[p] = self.pos[p]
        self.history[p].clear()

    def crash(self, p, rng):
        """Lose the last few changelog writes (not yet flushed) and replay from the commit."""
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
            for _ in range(rng.randint(1, 5)):
                self.step(p)
            r = rng.random()
            if r < crash_rate:
                self.crash(p, rng)
            elif r < 0.5:
                self.commit(p)


def ingest(population_seed, n_events, bus, rng, reemit_rate=0.0):
    """Normalise + resolve like the ingest stage and emit merges then events, keyed by profile."""
    normalizer = Normalizer(PiiHasher("k"))
    graph = MemoryIdentityGraph(IdentityRules())
    events = list(Population(30, seed=population_seed).events(n_events, T0, 5000))
    touchpoints = []
    emitted = []
    for offset, raw in enumerate(events):
        t = normalizer.normalize(raw, T0)
        assert isinstance(t, Touchpoint)
        t.source = f"ns.touchpoints/{offset % 2}/{offset}"
        touchpoints.append(t)
        emitted.append((t, offset))
    # two ingest workers (input partitions 0 and 1) race: interleave their outputs
    pending = {0: [x for x in emitted if x[1] % 2 == 0], 1: [x for x in emitted if x[1] % 2 == 1]}
    while pending[0] or pending[1]:
        p = rng.choice([q for q in (0, 1) if pending[q]])
        batch = pending[p][:rng.randint(1, 8)]
        pending[p] = pending[p][len(batch):]
        replay = []
        for t, _ in batch:
            [res] = graph.resolve_batch([ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms)])
            assert res.outcome == "applied", res
            t.profile_id = res.profile_id
            for loser in res.merged:
                bus.send(loser, orjson.dumps({"control": "merge", "from": loser, "into": res.profile_id, "message_id": t.message_id, "ts_ms": t.ts_ms}))
            bus.send(res.profile_id, t.to_bytes())
            replay.append(t)
        if rng.random() < reemit_rate:  # ingest crashed before committing: the batch is emitted again
            for t in replay:
                [res] = graph.resolve_batch([ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms)])
                t.profile_id = res.profile_id  # may be the survivor now: re-resolved against the current graph
                for loser in res.merged:
                    bus.send(loser, orjson.dumps({"control": "merge", "from": loser, "into": res.profile_id, "message_id": t.message_id, "ts_ms": t.ts_ms}))
                bus.send(res.profile_id, t.to_bytes())
        for _ in range(rng.randint(0, 6)):  # profiles run concurrently with ingest
            p2 = rng.randrange(len(bus.logs))
            bus.step(p2)
    return graph, touchpoints


def oracle(graph, touchpoints):
    groups = {}
    for t in touchpoints:
        pid = graph.lookup(t.identifiers[0])
        groups.setdefault(pid, []).append(t.to_dict())
    out = {}
    for pid, events in groups.items():
        state = new_profile()
        for e in events:
            fold(state, e)
        out[pid] = render(pid, state)
    return out


def live_profiles(bus):
    out = {}
    for key, raw in bus.table.items():
        state = decode(raw)
        if "tomb" not in state:
            r = render(key, state)
            r.pop("merged_from")
            out[key] = r
    return out


def test_simulated_races_crashes_and_replays_match_the_oracle():
    totals = {}
    for seed in range(12):
        rng = random.Random(seed)
        bus = Bus(partitions=3)
        graph, touchpoints = ingest(seed, 250, bus, rng, reemit_rate=0.2)
        bus.run(rng, crash_rate=0.15)
        expected = oracle(graph, touchpoints)
        for r in expected.values():
            r.pop("merged_from")
        got = live_profiles(bus)
        assert set(got) == set(expected), seed
        for pid in expected:
            assert got[pid] == expected[pid], (seed, pid)
        assert bus.outcomes.get("merged", 0) > 0, "the scenario must contain merges"
        assert sum(r["event_count"] for r in got.values()) == len(touchpoints)
        for k, v in bus.outcomes.items():
            totals[k] = totals.get(k, 0) + v
    # every dedup path was exercised
    assert all(totals.get(k, 0) > 0 for k in ("duplicate", "replayed", "forwarded", "absorbed", "merge_duplicate")), totals


def test_re_emission_resolved_to_the_survivor_is_still_a_duplicate():
    stage = ProfileStage()
    b = stage.decide("B", None, event(1, pid="B"), offset=0).value
    absorb = stage.decide("B", b, merge_rec("B", "A"), offset=1).sends[0].value
    a = stage.decide("A", None, absorb, offset=0).value
    # ingest re-resolved the redelivered event 1 against the graph: now it belongs to A
    assert stage.decide("A", a, event(1, pid="A"), offset=1).outcome == "duplicate"


def test_decision_reports_the_component_size_for_the_metric():
    stage = ProfileStage()
    d = stage.decide("A", None, event(1, identifiers=["user_id:A", "email:h1", "order_id:o1"]), offset=0)
    assert d.identifiers == 2  # order ids are orders, not identifiers of the person
    d = stage.decide("A", d.value, event(2, identifiers=["device_id:d1"]), offset=1)
    assert d.identifiers == 3
    assert stage.decide("A", d.value, event(2), offset=2).identifiers is None  # a duplicate changes nothing


def test_keep_identifier_is_asked_once_per_identifier_and_its_verdict_holds():
    asked: list[str] = []

    def keep(ident: str) -> bool:
        asked.append(ident)
        return not ident.endswith(":blocked")

    stage = ProfileStage(keep_identifier=keep)
    value = None
    for i in range(5):
        value = stage.decide("A", value, event(i, identifiers=["user_id:A", "email:blocked"]), offset=i).value
    assert sorted(decode(value)["ids"]) == ["user_id:A"]
    assert sorted(asked) == ["email:blocked", "user_id:A"]
