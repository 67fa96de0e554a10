"""The re-evaluation timer's walk: bounded per tick, due profiles found, members counted per pass."""

import orjson

from streams.activation.wiring import Rescan


def value(members=(), due=None, tomb=False):
    if tomb:
        return b'{"tomb":"erased","at":1,"po":1}'
    ax = {"m": {name: k for name, k in members}}
    if due is not None:
        ax["due"] = due
    return orjson.dumps({"v": 1, "n": 1, "ax": ax})


def test_bounded_ticks_find_due_profiles_and_count_members_per_pass():
    table = {b"a": value([("x", 1), ("y", 2)], due=100), b"b": value([("x", 3)], due=500), b"c": value(tomb=True),
             b"d": value([("y", 1)], due=50), b"e": b'{"v":1,"n":3}'}
    scan = Rescan(per_tick=2, max_due=1)
    keys = lambda: sorted(table)  # noqa: E731
    due1, counts = scan.tick(keys, table.get, now_ms=200)   # a, b: a due
    assert due1 == [b"a"] and counts is None
    due2, counts = scan.tick(keys, table.get, now_ms=200)   # c (tomb), d: d due
    assert due2 == [b"d"] and counts is None
    due3, counts = scan.tick(keys, table.get, now_ms=200)   # e (no activation state)
    assert due3 == [] and counts is None
    due4, counts = scan.tick(keys, table.get, now_ms=600)   # pass ended: counts; new pass starts with a, b
    assert counts == {"x": 2, "y": 1}                       # x: a (k=1), b (k=3); y: d (k=1); a's y (k=2) exited
    assert due4 == [b"a"]                                   # b is due too, but one a tick: found next pass


def test_an_empty_table_still_reports_zero_members():
    scan = Rescan(per_tick=10, max_due=10)
    assert scan.tick(lambda: [], {}.get, 0) == ([], None)
    assert scan.tick(lambda: [], {}.get, 0) == ([], {})


def test_a_key_that_cannot_be_settled_is_written_unsettled_and_counted_not_replayed_forever():
    from prometheus_client import CollectorRegistry

    from streams.activation.definitions import Definitions
    from streams.activation.stage import Out
    from streams.activation.wiring import Activation

    activation = Activation(Definitions(), CollectorRegistry())

    class Stage:
        def settle(self, key, before, after, at_ms=None):
            if key == "bad":
                raise RuntimeError("boom")
            return after + b"!", [Out("audiences", key, b"{}", "entered")]

    activation.stage = Stage()
    staged = {b"bad": (b"v1", None), b"good": (b"v2", None)}
    sent = []
    activation.settle(staged, lambda k: None, lambda topic, key, value: sent.append((topic, key, value)))
    assert staged == {b"bad": (b"v1", None), b"good": (b"v2!", None)}
    assert sent == [("audiences", b"good", b"{}")]
    assert activation.errors._value.get() == 1
    assert activation.changes.labels("entered")._value.get() == 1


def test_the_activation_state_read_alone_equals_that_of_the_whole_value():
    """The timer parses only ``ax`` (msgspec, the rest skipped): the same dict as decoding it all,
    on every value of a population settled with audiences and time-dependent traits."""
    from streams.activation.definitions import load
    from streams.activation.wiring import activation_state
    from tests.unit.activation.test_decoded import _records, _run

    table, _ = _run(_records(600, seed=5), load("docs/activation.example.toml"), keep_decoded=64)
    live = [raw for raw in table.values() if b'"ax"' in raw]
    assert len(live) > 50 and any(b'"due":' in raw for raw in live)
    for raw in table.values():
        assert activation_state(raw) == (orjson.loads(raw).get("ax") or {})
