"""Issue 21, High 1: a profile value stays bounded on every axis, whatever valid events say.

Before the fix, 40 identify calls with a 30,000-character trait *name* (each event under the
32 KiB record limit) grew one value past 1 MiB: Kafka refused its changelog write and the
merge record carrying it could never be sent.
"""

from collections import Counter

import orjson

from streams.profiles.bounds import TRIM_ORDER, bounded_encode
from streams.profiles.profile import Limits, decode, new_profile
from streams.profiles.stage import ProfileStage

T0 = 1_767_225_600_000
MIB = 1 << 20


def identify(i, pid="A", name_chars=30_000):
    traits = {f"{chr(97 + i % 26)}{i:04d}" + "n" * name_chars: "v", "plan": f"p{i}"}
    return orjson.dumps({"message_id": f"m{i}", "type": "identify", "ts_ms": T0 + i * 1000, "received_at_ms": T0,
                         "identifiers": [f"user_id:{pid}"], "profile_id": pid, "source": f"ns.touchpoints/0/{i}", "traits": traits})


def test_forty_identify_calls_with_huge_trait_names_stay_small_and_are_counted():
    stage = ProfileStage()
    value = None
    for i in range(40):
        assert len(identify(i)) < 32_768  # each one is a valid event
        d = stage.decide("A", value, identify(i), offset=i)
        assert d.outcome == "applied"
        value = d.value
    assert len(value) < 16_384, len(value)  # was 1.2 MB: broker refuses > 1 MiB
    state = decode(value)
    assert state["n"] == 40 and state["tr"]["plan"][0] == "p39"
    assert all(len(name) <= Limits().name_chars for name in state["tr"])
    assert stage.trimmed["trait_name"] == 40


def test_bounded_encode_trims_in_the_stated_order_deterministically():
    limits = Limits(max_bytes=6000)
    state = new_profile()
    state["tl"] = [[T0 + i, "web", "track", "x" * 70] for i in range(50)]
    state["tr"] = {f"t{i:02d}": ["v" * 200, T0 + i] for i in range(30)}
    state["ids"] = {f"user_id:u{i}": [T0, T0 + i] for i in range(5)}
    copy = orjson.loads(orjson.dumps(state))
    dropped = Counter()
    raw = bounded_encode(state, limits, dropped)
    assert len(raw) <= limits.max_bytes
    assert raw == bounded_encode(copy, limits)  # same input, same trimmed value
    assert state["tl"] == [] and dropped["tl"] == 50  # the timeline goes first, oldest first
    kept = sorted(state["tr"])
    assert kept == [f"t{i:02d}" for i in range(30 - len(kept), 30)]  # then the least recently set traits
    assert dropped["tr"] == 30 - len(kept) and "ids" not in dropped and len(state["ids"]) == 5
    assert TRIM_ORDER[:2] == ("tl", "tr")


def test_within_bounds_nothing_is_trimmed():
    state = new_profile()
    state["tr"] = {"plan": ["gold", T0]}
    assert bounded_encode(state) == orjson.dumps(state)


def test_a_merge_of_an_oversized_value_written_before_the_bound_sends_a_bounded_absorb():
    """The wedge: merging a 1.2 MB profile (as the old code held it in memory) produced an absorb
    record Kafka refused for ever. Now the absorb carries the bounded state."""
    state = new_profile()
    state.update(n=40, fs=T0, ls=T0, ids={"user_id:B": [T0, T0]},
                 tr={f"{i:02d}" + "n" * 30_000: ["v", T0 + i] for i in range(40)})
    old_value = orjson.dumps(state)
    assert len(old_value) > MIB
    stage = ProfileStage()
    merge = orjson.dumps({"control": "merge", "from": "B", "into": "A", "message_id": "mm", "ts_ms": T0})
    d = stage.decide("B", old_value, merge, offset=100)
    assert d.outcome == "merged" and len(d.sends) == 1 and d.sends[0].must_land
    assert len(d.sends[0].value) <= Limits().max_bytes + 1024, len(d.sends[0].value)
    absorbed = orjson.loads(d.sends[0].value)["state"]
    assert absorbed["n"] == 40 and absorbed["ids"] == {"user_id:B": [T0, T0]}
