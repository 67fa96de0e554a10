"""The decoded values the profile stage keeps (``ProfileStage.take`` / ``keep``: the activation
stage turns keeping on from decide to settle; kept across records here, the harder case) are
never served stale: after a table restore, a rebalance, an erasure, a merge or absorb, or a
decision that mutated the value and was not written, the stage decides exactly as a stage that
keeps nothing (every value decoded from the bytes the table holds).

Each scenario is decided twice: by the stage under test (keeping) and by a fresh stage with
``keep_decoded=0`` given the same table bytes; the outcomes and values must be identical. A
cache keyed by the profile id alone, or one that peeks instead of handing the dict over, fails
these (it would serve the value this stage wrote last, or one a dropped decision changed)."""

import random

import orjson
import pytest

from streams.events.model import Touchpoint
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles import stage as profile_stage
from streams.profiles.profile import decode
from streams.profiles.stage import Decision, ProfileStage
from touchpoint_tools.simulate.population import Population

T0 = 1_767_225_600_000


def event(i, pid="A", part=0, offset=None, **extra):
    e = {"message_id": f"m{i}", "type": "track", "ts_ms": T0 + i * 1000, "received_at_ms": T0, "identifiers": [f"user_id:{pid}"],
         "channel": "web", "event": "Product Viewed", "profile_id": pid, "source": f"ns.touchpoints/{part}/{i if offset is None else offset}"}
    e.update(extra)
    return orjson.dumps(e)


def copy_of(raw: bytes) -> bytes:
    """The same bytes as another object: what a restore from the changelog puts in the table."""
    out = bytes(bytearray(raw))
    assert out == raw and out is not raw
    return out


def plain(key: str, current: bytes | None, record: bytes, offset: int) -> Decision:
    """What a stage keeping nothing decides (the reference)."""
    return ProfileStage(keep_decoded=0).decide(key, current, record, offset)


def same(kept: ProfileStage, key: str, current: bytes | None, record: bytes, offset: int) -> Decision:
    d = kept.decide(key, current, record, offset)
    ref = plain(key, current, record, offset)
    assert (d.outcome, d.value, d.sends, d.identifiers) == (ref.outcome, ref.value, ref.sends, ref.identifiers)
    return d


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counted = {"n": 0}
    real = profile_stage.decode

    def counting(raw: bytes) -> dict:
        counted["n"] += 1
        return real(raw)

    monkeypatch.setattr(profile_stage, "decode", counting)
    return counted


def kept() -> ProfileStage:
    """A stage keeping decoded values (as the activation stage sets it), across records here."""
    return ProfileStage(keep_decoded=512)


def test_the_value_kept_is_taken_without_a_decode_and_nothing_is_kept_by_default(decodes):
    stage = kept()
    v1 = stage.decide("A", None, event(1), 0).value
    stage.decide("A", v1, event(2), 1)
    assert decodes["n"] == 0  # the dict kept with v1 was taken
    off = ProfileStage()
    v1 = off.decide("A", None, event(1), 0).value
    off.decide("A", v1, event(2), 1)
    assert decodes["n"] == 1


def test_a_value_restored_from_the_changelog_is_decoded_not_the_one_kept(decodes):
    # The worker wrote v1 and v2, crashed before v2's changelog record; the restore brings back v1
    # (another bytes object): v2's replay position must not skip event 2, replayed at its position.
    stage = kept()
    v1 = stage.decide("A", None, event(1), 10).value
    stage.decide("A", v1, event(2), 11)
    restored = copy_of(v1)
    d = same(stage, "A", restored, event(2), 11)
    assert d.outcome == "applied" and decode(d.value)["n"] == 2
    assert decodes["n"] >= 1


def test_after_a_rebalance_the_other_workers_value_is_used():
    # This worker kept A's value; the partition moved to another worker, which applied events 2-4,
    # and came back: the table holds the other worker's value.
    stage = kept()
    mine = stage.decide("A", None, event(1), 0).value
    other = ProfileStage()
    theirs = mine
    for i in (2, 3, 4):
        theirs = other.decide("A", copy_of(theirs), event(i), i).value
    d = same(stage, "A", theirs, event(5), 5)
    assert decode(d.value)["n"] == 5
    # and the kept value of a key whose partition is back with the same bytes still equals them
    assert same(stage, "A", d.value, event(6), 6).outcome == "applied"


def test_an_erasure_is_never_answered_from_the_live_value_kept():
    stage = kept()
    live = stage.decide("A", None, event(1), 0).value
    tomb = same(stage, "A", live, orjson.dumps({"control": "erase", "profile_id": "A", "ts_ms": T0}), 1).value
    assert same(stage, "A", tomb, event(2), 2).outcome == "erased_dropped"
    # an erasure written by another worker (restored), while this stage still keeps a live value
    live2 = stage.decide("B", None, event(3, pid="B"), 3).value
    erased = ProfileStage().decide("B", copy_of(live2), orjson.dumps({"control": "erase", "profile_id": "B", "ts_ms": T0}), 4).value
    assert same(stage, "B", erased, event(4, pid="B"), 5).outcome == "erased_dropped"


def test_a_merged_profile_forwards_and_an_absorb_is_folded_once_per_value():
    stage = kept()
    merge = orjson.dumps({"control": "merge", "from": "B", "into": "A", "message_id": "mm", "ts_ms": T0})
    b = stage.decide("B", None, event(1, pid="B"), 0).value
    merged = same(stage, "B", b, merge, 1)
    assert merged.outcome == "merged" and len(merged.sends) == 1
    assert same(stage, "B", merged.value, event(2, pid="B"), 2).outcome == "forwarded"
    # a merge written by another worker (restored) while this stage keeps C's live value
    c = stage.decide("C", None, event(3, pid="C"), 0).value
    tomb = ProfileStage().decide("C", copy_of(c), orjson.dumps({"control": "merge", "from": "C", "into": "A", "ts_ms": T0}), 1).value
    assert same(stage, "C", tomb, event(4, pid="C"), 2).outcome == "forwarded"

    absorb = merged.sends[0].value
    a0 = stage.decide("A", None, event(5), 0).value
    a1 = same(stage, "A", a0, absorb, 5).value
    assert decode(a1)["ab"] == ["B"]
    # The absorb replayed against A's value from before it (restored) while a1 is kept: folded again.
    again = same(stage, "A", copy_of(a0), absorb, 5)
    assert again.outcome == "absorbed" and again.value == a1
    assert same(stage, "A", again.value, absorb, 6).outcome == "absorb_duplicate"


def test_a_decision_that_changed_the_value_and_was_not_written_leaves_nothing_stale():
    # Event 2 passes the watermark (advancing it in the dict) and is then a duplicate by message id:
    # not written. Event 3 (a new message, input offset between 1 and 2's) is new against the table.
    stage = kept()
    v1 = stage.decide("A", None, event(1, offset=1), 0).value
    assert same(stage, "A", v1, event(1, offset=9), 1).outcome == "duplicate"
    assert same(stage, "A", v1, event(3, offset=5), 2).outcome == "applied"


def test_a_fold_that_raised_half_way_leaves_nothing_stale():
    stage = kept()
    v1 = stage.decide("A", None, event(1), 0).value
    with pytest.raises(AttributeError):  # traits not a mapping: raises after the counts were folded
        stage.decide("A", v1, event(2, traits=["not", "a", "mapping"]), 1)
    d = same(stage, "A", v1, event(3), 1)
    assert decode(d.value)["n"] == 2


def _population(events: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    normalizer = Normalizer(PiiHasher("test"), "CN", 86_400_000)
    graph = MemoryIdentityGraph(IdentityRules())
    now = 1_780_000_000_000
    out: list[tuple[str, bytes]] = []
    for offset, raw in enumerate(Population(max(40, events // 15), seed=seed).events(events, now - 86_400_000, 3000)):
        t = normalizer.normalize(raw, now)
        if not isinstance(t, Touchpoint):
            continue
        t.source = f"t.touchpoints/0/{offset}"
        [res] = graph.resolve_batch([ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms)])
        t.profile_id = res.profile_id
        for loser in res.merged:
            out.append((loser, orjson.dumps({"control": "merge", "from": loser, "into": res.profile_id,
                                             "message_id": t.message_id, "ts_ms": t.ts_ms})))
        out.append((res.profile_id, t.to_bytes()))
        if rng.random() < 0.08:
            out.append(out[rng.randrange(len(out))])  # redelivered
        if rng.random() < 0.01:
            out.append((res.profile_id, orjson.dumps({"control": "erase", "profile_id": res.profile_id, "ts_ms": t.ts_ms})))
    return out


def _run(records: list[tuple[str, bytes]], keep_decoded: int) -> tuple[dict[str, bytes], list[tuple]]:
    """Bundles of 6 records, as the agent: decide, write each staged key once. Randomly (same seed
    for both runs): a bundle interrupted before its writes and decided again, a flush, and a
    restore of the table from the 'changelog' (every value replaced by an equal copy, the last
    bundle's writes lost and its records processed again)."""
    stage = ProfileStage(keep_decoded=keep_decoded)
    rng = random.Random(11)
    table: dict[str, bytes] = {}
    flushed: dict[str, bytes] = {}
    outcomes: list[tuple] = []
    log = list(records)
    start = 0
    while start < len(log):
        bundle = log[start: start + 6]
        interrupted = rng.random() < 0.08
        for attempt in range(2 if interrupted else 1):
            staged: dict[str, bytes] = {}
            sends: list[tuple[str, bytes]] = []
            for index, (key, value) in enumerate(bundle):
                current = staged.get(key, table.get(key))
                d = stage.decide(key, current, value, start * 16 + index)
                outcomes.append((start, index, key, d.outcome, d.value, d.sends))
                sends.extend((s.key, s.value) for s in d.sends)
                if d.value is not None:
                    staged[key] = d.value
            if interrupted and attempt == 0:
                continue
            table.update(staged)
            log.extend(sends)
        roll = rng.random()
        if roll < 0.1:
            flushed = dict(table)  # a changelog flush
        elif roll < 0.14:
            table = {k: copy_of(v) for k, v in flushed.items()}  # crash: back to the last flush
            start = max(0, start - 12)  # the uncommitted records again
            continue
        start += 6
    return table, outcomes


def test_a_population_decides_the_same_with_and_without_kept_values(decodes):
    records = _population(1200, seed=5)
    plain_table, plain_outcomes = _run(records, keep_decoded=0)
    plain_decodes, decodes["n"] = decodes["n"], 0
    kept_table, kept_outcomes = _run(records, keep_decoded=512)
    assert kept_table == plain_table
    assert kept_outcomes == plain_outcomes
    outcomes = {o[3] for o in plain_outcomes}
    assert {"applied", "duplicate", "replayed", "merged", "absorbed", "erased"} <= outcomes, outcomes
    assert decodes["n"] < plain_decodes * 0.8, (decodes["n"], plain_decodes)
