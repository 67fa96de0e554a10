"""The msgspec accept path (streams/events/fastcheck.py) decides exactly as the fastjsonschema validator.

``decode`` tries msgspec first and falls back to the validator when msgspec is not certain, so the
only way the two can differ is msgspec accepting an event the schema refuses. These tests compare
``decode`` with ``decode_reference`` (validator alone) on the 25,043-record corpus of
touchpoint_tools/bench/prepare_cost.py (the workload plus ~5,000 malformed and edge-case records) and on generated
events aimed at each rule's edges, and check that the fast path really decides the valid workload.
"""

import importlib
import importlib.util
import re
from pathlib import Path

import fastjsonschema.draft04
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import fastcheck
from streams.events.reasons import Rejected
from streams.ingest.decode import decode, decode_reference

LIMIT = 32 * 1024
ROOT = Path(__file__).resolve().parents[3]


def _prepare_cost():
    """The corpus builders of the prepare_cost bench (a module of touchpoint_tools once the tooling
    moved there, a script under bench/ before)."""
    try:
        return importlib.import_module("touchpoint_tools.bench.prepare_cost")
    except ImportError:
        pass
    spec = importlib.util.spec_from_file_location("prepare_cost", ROOT / "bench" / "prepare_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus() -> tuple[list[bytes], list[bytes | None]]:
    pc = _prepare_cost()
    fixed = pc.fixed_records(20_000)
    return fixed, fixed + pc.edge_records(fixed[:500], 5_000)


def test_the_corpus_decides_and_words_every_record_as_the_validator(corpus):
    _, records = corpus
    assert len(records) == 25_043
    differ = [i for i, raw in enumerate(records) if decode(raw, LIMIT) != decode_reference(raw, LIMIT)]
    assert differ == []
    rejected = sum(isinstance(decode(raw, LIMIT), Rejected) for raw in records)
    assert 1_000 < rejected < 5_043  # the edge cases really exercise the reject path


def test_the_fast_path_alone_accepts_the_whole_valid_workload(corpus):
    workload, _ = corpus
    events = [orjson.loads(raw) for raw in workload]
    assert all(fastcheck.accepts(raw, event, event["type"]) for raw, event in zip(workload, events, strict=True))


def test_the_date_time_rule_is_the_installed_validators():
    assert fastcheck.DATE_TIME_PATTERN == fastjsonschema.draft04.CodeGeneratorDraft04.FORMAT_REGEXS["date-time"]


def _event(**extra):
    base = {"type": "track", "messageId": "m-1", "event": "Product Viewed", "userId": "u1"}
    base.update(extra)
    return base


EDGES = [
    _event(messageId="m\n"), _event(messageId="m\\"), _event(userId="u\n"), _event(userId="a\u0001b"),
    _event(userId="u\u007f"), _event(sourceId="src\n"), _event(sourceId="a b"), _event(sourceId="x" * 65),
    _event(userId=5.0), _event(userId=True), _event(userId=""), _event(userId=None), _event(userId=2 ** 63 - 1),
    _event(timestamp="2023-02-29T00:00:00Z"), _event(timestamp="2024-02-29T00:00:00Z"),
    _event(timestamp="2026-01-01t00:00:00z"), _event(timestamp="2026-01-01 00:00:00Z"),
    _event(timestamp="2026-01-01T00:00:60+0800"), _event(timestamp="2026-01-01T00:00:00+24:00"),
    _event(timestamp="2026-01-01T00:00:00Z\n"), _event(timestamp="2026-01-01T00:00:00.000000000000Z"),
    _event(traits={f"k{i}": i for i in range(300)}), _event(traits={f"k{i}": i for i in range(301)}),
    _event(context={"traits": {f"k{i}": i for i in range(301)}}),
    _event(context={"consent": {f"k{i}": i for i in range(50)}}), _event(context={"consent": {f"k{i}": i for i in range(51)}}),
    _event(properties={f"k{i}": i for i in range(301)}),
    {"type": "identify", "messageId": "m", "userId": "u", "properties": {f"k{i}": i for i in range(301)}},
    _event(properties={"price": True}), _event(properties={"revenue": True}), _event(properties={"revenue": 1e13}),
    _event(properties={"products": [{"quantity": 2.0}]}), _event(properties={"products": [{"quantity": True}]}),
    _event(properties={"products": [{"price": 0}]}), _event(properties={"products": [{}] * 101}),
    _event(properties={"currency": "usd\n"}), _event(properties={"currency": "US"}),
    _event(context={"externalIds": [{"id": "x", "type": "member_id", "encoding": "none"}] * 51}),
    _event(context={"externalIds": [{"id": "x", "type": "member_id", "appId": 5}]}),
    _event(context={"device": []}), _event(context=[]), _event(traits=[]), _event(version=2.0), _event(version=True),
    _event(integrations=None), _event(channel="WEB"), _event(event=""), _event(event="e" * 201),
    {"type": "alias", "messageId": "m", "previousId": "a"}, {"type": "group", "messageId": "m", "groupId": 1.0},
]


@pytest.mark.parametrize("event", EDGES, ids=range(len(EDGES)))
def test_edge_cases_decide_as_the_validator(event):
    raw = orjson.dumps(event)
    assert decode(raw, LIMIT) == decode_reference(raw, LIMIT)


def test_duplicate_keys_are_checked_in_every_occurrence():
    first_bad = b'{"type":"track","messageId":"m","event":"e","userId":"","userId":"ok"}'
    last_bad = b'{"type":"track","messageId":"m","event":"e","userId":"ok","userId":""}'
    for raw in (first_bad, last_bad):
        assert decode(raw, LIMIT) == decode_reference(raw, LIMIT)
    assert not isinstance(decode(first_bad, LIMIT), Rejected)  # the validator sees the last one; msgspec defers
    assert isinstance(decode(last_bad, LIMIT), Rejected)


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(2 ** 40, 2 ** 63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "web", "usd", "x" * 101, "x" * 257, "m\n", "\u0000", "2026-11-30T21:04:51.910Z",
                     "2026-11-30T21:04:51.910+0800", "2026-02-30T00:00:00Z", "user_id", "none", "member_id"]),
    st.text(max_size=4), st.lists(st.integers(0, 2), max_size=2), st.dictionaries(st.sampled_from(["id", "type", "x"]), st.integers(0, 2), max_size=2),
)
_paths = st.sampled_from([
    ("messageId",), ("sourceId",), ("userId",), ("anonymousId",), ("timestamp",), ("sentAt",), ("channel",), ("version",),
    ("event",), ("name",), ("category",), ("groupId",), ("previousId",), ("traits",), ("traits", "email"), ("traits", "phone"),
    ("context",), ("context", "channel"), ("context", "device"), ("context", "device", "id"), ("context", "traits", "phone"),
    ("context", "externalIds"), ("context", "location", "city"), ("context", "store", "id"), ("context", "consent"),
    ("context", "locale"), ("properties",), ("properties", "products"), ("properties", "order_id"), ("properties", "revenue"),
    ("properties", "currency"), ("properties", "store_id"), ("integrations",),
])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(call_type=st.sampled_from(["identify", "track", "page", "screen", "group", "alias"]),
       edits=st.lists(st.tuples(_paths, _values), min_size=1, max_size=4),
       ext=st.lists(st.fixed_dictionaries({"id": _values, "type": _values}), max_size=2),
       products=st.lists(st.dictionaries(st.sampled_from(["product_id", "price", "quantity", "sku"]), _values, max_size=3), max_size=2))
def test_generated_events_decide_as_the_validator(call_type, edits, ext, products):
    event = {"type": call_type, "messageId": "m", "event": "e", "userId": "u", "previousId": "p", "groupId": "g",
             "context": {"externalIds": ext}, "properties": {"products": products}}
    for path, value in edits:
        node = event
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = value
    try:
        raw = orjson.dumps(event)
    except orjson.JSONEncodeError:
        return
    assert decode(raw, LIMIT) == decode_reference(raw, LIMIT)


def test_patterns_refuse_what_the_schema_refuses_with_a_trailing_newline():
    # fastjsonschema rewrites "$" to "\Z"; a "$" would let "m\n" through re.search
    assert re.search(r"^[^\u0000-\u001f]+$", "m\n") and not re.search(r"^[^\u0000-\u001f]+\Z", "m\n")
    raw = orjson.dumps(_event(messageId="m\n"))
    assert isinstance(decode(raw, LIMIT), Rejected)
