"""Keeping decoded values between the profile stage's decide and the activation stage's settle
(``ProfileStage.take`` / ``keep``) changes nothing: a seeded population run through both stages in
bundles (keys repeated inside a bundle, redelivered records, bundles interrupted before their
writes and processed again, re-evaluation controls) gives the same table bytes and the same
records, byte for byte, as with nothing kept (every value decoded from its bytes)."""

import random

import orjson
import pytest

from streams.activation.definitions import Definitions, load
from streams.activation.stage import ActivationStage
from streams.events.model import Touchpoint
from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ResolveRequest
from streams.identity.rules import IdentityRules
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles import stage as profile_stage
from streams.profiles.stage import ProfileStage
from touchpoint_tools.simulate.population import Population

DAY = 86_400_000
NOW = 1_780_000_000_000
ACTIVATE = orjson.dumps({"control": "activate"})


def _records(events: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    normalizer = Normalizer(PiiHasher("test"), "CN", DAY)
    graph = MemoryIdentityGraph(IdentityRules())
    out: list[tuple[str, bytes]] = []
    for offset, raw in enumerate(Population(max(50, events // 10), seed=seed).events(events, NOW - 60 * DAY, 3000)):
        t = normalizer.normalize(raw, NOW)
        if not isinstance(t, Touchpoint):
            continue
        t.ts_ms = NOW - rng.randint(0, 60) * DAY - rng.randint(0, DAY - 1)
        if rng.random() < 0.3:
            t.consent = {"marketing": rng.random() < 0.7}
        t.source = f"t.touchpoints/0/{offset}"
        [res] = graph.resolve_batch([ResolveRequest(t.message_id, t.source, t.identifiers, t.ts_ms)])
        t.profile_id = res.profile_id
        for loser in res.merged:
            out.append((loser, orjson.dumps({"control": "merge", "from": loser, "into": res.profile_id,
                                             "message_id": t.message_id, "ts_ms": t.ts_ms})))
        out.append((res.profile_id, t.to_bytes()))
        if rng.random() < 0.1:
            out.append(out[rng.randrange(len(out))])  # a redelivered record (a duplicate downstream)
        if rng.random() < 0.03:
            out.append((res.profile_id, ACTIVATE))
    return out


def _run(records: list[tuple[str, bytes]], defs: Definitions, keep_decoded: int) -> tuple[dict[str, bytes], list[tuple[str, str, bytes | None]]]:
    """Bundles of 8 records: decide every item, settle each staged key once, write; one bundle in
    13 is interrupted after deciding (nothing written) and processed again."""
    stage = ActivationStage(ProfileStage(), defs, lambda: NOW, keep_decoded=keep_decoded)
    rng = random.Random(7)
    table: dict[str, bytes] = {}
    outs: list[tuple[str, str, bytes | None]] = []
    log = list(records)
    start = 0
    while start < len(log):
        bundle = log[start: start + 8]
        interrupted = rng.random() < 1 / 13
        for attempt in range(2 if interrupted else 1):
            staged: dict[str, bytes] = {}
            sends: list[tuple[str, bytes]] = []
            for index, (key, value) in enumerate(bundle):
                current = staged.get(key, table.get(key))
                d = stage.decide(key, current, value, start * 16 + index)
                sends.extend((s.key, s.value) for s in d.sends)
                if d.value is not None:
                    staged[key] = d.value
            if interrupted and attempt == 0:
                continue  # cancelled before the writes: the bundle is decided again
            for key, value in staged.items():
                new, produced = stage.settle(key, table.get(key), value)
                outs.extend((o.topic, o.key, o.value) for o in produced)
                table[key] = new
            log.extend(sends)
        start += 8
    return table, outs


@pytest.mark.parametrize("definitions", ["docs/activation.example.toml", ""])
def test_kept_values_change_no_byte(definitions: str, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = load(definitions)
    records = _records(1500, seed=3)
    decoded = {"n": 0}
    real = profile_stage.decode

    def counting(raw: bytes) -> dict:
        decoded["n"] += 1
        return real(raw)

    monkeypatch.setattr(profile_stage, "decode", counting)
    plain_table, plain_outs = _run(records, defs, keep_decoded=0)
    plain_decodes, decoded["n"] = decoded["n"], 0
    kept_table, kept_outs = _run(records, defs, keep_decoded=64)
    assert kept_table == plain_table
    assert kept_outs == plain_outs
    assert len(plain_outs) > 500 and any(t == "audiences" for t, _, _ in plain_outs) == bool(defs.audiences)
    # Keeping is what made the difference in work: settling decoded (almost) nothing.
    assert decoded["n"] < plain_decodes * 0.6, (decoded["n"], plain_decodes)
