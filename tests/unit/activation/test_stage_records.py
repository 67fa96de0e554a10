"""The public profile of profile-updates is render() without profile_id and timeline, plus the
computed traits and audiences (it is written out separately for speed: this keeps them equal)."""

import random

from streams.activation.stage import public_profile
from streams.profiles.profile import fold, merge, new_profile, render
from tests.unit.activation.test_traits import make_event


def test_public_profile_equals_render_minus_timeline():
    rng = random.Random(5)
    for n in range(30):
        a, b = new_profile(), new_profile()
        for i in range(rng.randint(0, 30)):
            e = make_event(i, rng)
            e["identifiers"] = [f"user_id:u{rng.randint(0, 3)}", f"email:k1:{rng.randint(0, 9):032x}"]
            e["traits"] = {"region": e["region"]} if rng.random() < 0.3 else {}
            e["consent"] = {"marketing": rng.random() < 0.5} if rng.random() < 0.3 else None
            fold(a if rng.random() < 0.5 else b, e)
        b["ab"] = ["pb"]
        merge(a, b)
        want = render("p1", a)
        del want["profile_id"], want["timeline"]
        got = public_profile("p1", a, {"t": n}, {"x"})
        assert got.pop("computed_traits") == {"t": n} and got.pop("audiences") == ["x"]
        assert got == want and list(got) == list(want)


def test_every_record_says_what_it_is():
    """``Out.kind`` feeds the counters (the wiring no longer reads the bodies): it agrees with the
    body on every record of a population with merges, erasures and audiences."""
    import orjson

    from streams.activation.definitions import load
    from streams.activation.stage import ActivationStage
    from streams.profiles.stage import ProfileStage
    from tests.unit.activation.test_decoded import NOW, _records

    stage = ActivationStage(ProfileStage(), load("docs/activation.example.toml"), lambda: NOW)
    records = _records(800, seed=4)
    records += [(key, orjson.dumps({"control": "erase", "profile_id": key, "ts_ms": NOW})) for key, _ in records[::97]]
    table: dict[str, bytes] = {}
    kinds: dict[str, int] = {}
    for pos, (key, value) in enumerate(records):
        d = stage.decide(key, table.get(key), value, pos)
        records.extend((s.key, s.value) for s in d.sends)
        if d.value is None:
            continue
        table[key], outs = stage.settle(key, table.get(key), d.value)
        for out in outs:
            body = out.value
            if out.topic == "audiences":
                want = "entered" if orjson.loads(body)["change"] == "entered" else "exited"
            else:
                want = "tombstone" if body is None else orjson.loads(body)["type"]
            assert out.kind == want
            kinds[want] = kinds.get(want, 0) + 1
    assert set(kinds) == {"entered", "exited", "profile", "redirect", "tombstone"}, kinds
