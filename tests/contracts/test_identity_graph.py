"""Contract of the identity graph: the same scenarios against the in-memory twin and Redis.

Redis comes from TOUCHPOINT_TEST_REDIS_URL, else a private ``redis-server`` on a free loopback
port is started for this module (skipped when the binary is missing). Every test uses its own
namespace, so a shared Redis is fine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from streams.identity import (
    IdentityRules,
    MemoryIdentityGraph,
    RedisIdentityGraph,
    Resolution,
    ResolveRequest,
)
from streams.identity.memory_graph import suppression_digest
from streams.identity.model import Identifier
from streams.identity.split import SplitError
from tests.unit.identity.test_order_independence import RULES as ORDER_RULES
from tests.unit.identity.test_order_independence import batches as order_batches
from tests.unit.identity.test_order_independence import check as check_order_independence
from tests.unit.identity.test_order_independence import requests as order_requests
from tests.unit.identity.test_order_independence import traffic as order_traffic
from tests.unit.identity.test_properties import (
    CONFLICT_FREE_RULES,
    TIGHT_RULES,
    Folder,
    check_components,
    check_rule_invariants,
    conflict_free_traffic,
    conflicting_traffic,
    split,
    to_requests,
)

DEFAULT_RULES = IdentityRules()


# -- Redis for the module ----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TOUCHPOINT_TEST_REDIS_URL")
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed and TOUCHPOINT_TEST_REDIS_URL not set")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = SyncRedis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except Exception:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


class RedisTwin:
    """RedisIdentityGraph driven synchronously, on its own event loop and client."""

    def __init__(self, url: str, rules: IdentityRules, namespace: str | None = None, **client_kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = Redis.from_url(url, **client_kw)
        self.namespace = namespace or f"t-{uuid.uuid4().hex[:10]}"
        self.graph = RedisIdentityGraph(self.client, self.namespace, rules)
        self.rules = rules

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def resolve_batch(self, reqs: Sequence[ResolveRequest]) -> list[Resolution]:
        return self.run(self.graph.resolve_batch(reqs))

    def lookup(self, ident: Identifier) -> str | None:
        return self.run(self.graph.lookup(ident))

    def current_profile(self, pid: str) -> str | None:
        return self.run(self.graph.current_profile(pid))

    def identifiers_of(self, pid: str) -> list[Identifier]:
        return self.run(self.graph.identifiers_of(pid))

    def erase(self, ident: Identifier, at_ms: int | None = None) -> Any:
        return self.run(self.graph.erase(ident, at_ms))

    def readmit(self, digests: Sequence[str], ts_ms: int) -> list[str]:
        from streams.identity.data_keys import RedisReadmitter

        [done] = self.run(RedisReadmitter(self.client, self.namespace).readmit([(digests, ts_ms)]))
        return done

    def why(self, a: Identifier, b: Identifier) -> Any:
        return self.run(self.graph.why(a, b))

    def split(self, ts_ms: int, **how: Any) -> Any:
        return self.run(self.graph.split(ts_ms, **how))

    def explain(self, a: Identifier, b: Identifier) -> Any:
        return self.run(self.graph.explain(a, b))

    def keys(self) -> list[str]:
        return [k.decode() for k in self.run(self.client.keys(self.namespace + ":*"))]

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory of graphs of the parametrised kind, closed after the test."""
    made: list[RedisTwin] = []

    def factory(rules: IdentityRules = DEFAULT_RULES) -> Any:
        if request.param == "memory":
            return MemoryIdentityGraph(rules)
        twin = RedisTwin(request.getfixturevalue("redis_url"), rules)
        made.append(twin)
        return twin

    yield factory
    for twin in made:
        twin.close()


def R(mid: str, *ids: str, claim: str | None = None, ts: int = 1_700_000_000_000) -> ResolveRequest:
    return ResolveRequest(mid, claim or f"touchpoints/0/{mid}", tuple(tuple(i.split(":", 1)) for i in ids), ts)  # type: ignore[misc]


def ID(text: str) -> Identifier:
    kind, _, value = text.partition(":")
    return kind, value


def kinds(res: Resolution) -> list[tuple[str, str]]:
    return [(c["type"], c["rule"]) for c in res.changes]


def snapshot(g: Any, idents: Sequence[str]) -> dict[str, Any]:
    return {i: (g.lookup(ID(i)), tuple(g.identifiers_of(p)) if (p := g.lookup(ID(i))) else ()) for i in idents}


# -- scenarios (both graphs) --------------------------------------------------------------------

def test_first_event_creates_a_profile(make: Callable[..., Any]) -> None:
    g = make()
    [res] = g.resolve_batch([R("m1", "anonymous_id:a1", "device_id:d1")])
    assert res.outcome == "applied" and res.profile_id == "p1" and res.merged == ()
    assert res.changes == ({"type": "created", "rule": "first_seen", "identifiers": ["device_id:d1", "anonymous_id:a1"],
                            "message_id": "m1", "profile_id": "p1", "ts_ms": 1_700_000_000_000},)
    assert g.lookup(ID("anonymous_id:a1")) == g.lookup(ID("device_id:d1")) == "p1"
    assert g.identifiers_of("p1") == [ID("device_id:d1"), ID("anonymous_id:a1")]
    assert g.lookup(ID("anonymous_id:zz")) is None and g.identifiers_of("p99") == []


def test_merge_keeps_the_older_profile_and_forwards_the_loser(make: Callable[..., Any]) -> None:
    g = make()
    r = g.resolve_batch([R("m1", "anonymous_id:a1"), R("m2", "anonymous_id:a2"), R("m3", "anonymous_id:a3"),
                         R("m4", "user_id:u1", "anonymous_id:a3", "anonymous_id:a2", "anonymous_id:a1")])
    assert [x.profile_id for x in r] == ["p1", "p2", "p3", "p1"]
    assert r[3].merged == ("p2", "p3")
    assert kinds(r[3]) == [("merged", "co_occurrence"), ("merged", "co_occurrence"), ("linked", "co_occurrence")]
    assert [c.get("from_profile_id") for c in r[3].changes] == ["p2", "p3", None]
    assert g.current_profile("p3") == g.current_profile("p2") == g.current_profile("p1") == "p1"
    assert {g.lookup(ID(f"anonymous_id:a{i}")) for i in (1, 2, 3)} == {"p1"}
    assert g.identifiers_of("p3") == g.identifiers_of("p1") and len(g.identifiers_of("p1")) == 4
    # a second generation of merges keeps forwards one hop deep
    r = g.resolve_batch([R("m5", "device_id:d9"), R("m6", "device_id:d9", "anonymous_id:a1")])
    assert r[1].profile_id == "p1" and r[1].merged == ("p4",)
    assert g.current_profile("p4") == "p1"


def test_shared_device_does_not_merge_two_users(make: Callable[..., Any]) -> None:
    g = make()
    r = g.resolve_batch([R("m1", "user_id:u1", "device_id:d1"), R("m2", "user_id:u2", "device_id:d1"),
                         R("m3", "device_id:d1", "anonymous_id:a7")])
    assert r[0].profile_id == "p1" and r[1].profile_id == "p2" and r[1].merged == ()
    assert ("conflict", "unique:user_id") in kinds(r[1])
    conflict = next(c for c in r[1].changes if c["type"] == "conflict")
    assert conflict["identifiers"] == ["device_id:d1"] and conflict["from_profile_id"] == "p1"
    assert g.lookup(ID("device_id:d1")) == "p1" and g.lookup(ID("user_id:u2")) == "p2"
    assert r[2].profile_id == "p1"  # the device keeps resolving to its first owner


def test_two_user_ids_in_one_event_link_only_the_first(make: Callable[..., Any]) -> None:
    g = make()
    [r] = g.resolve_batch([R("m1", "anonymous_id:a1", "user_id:u2", "user_id:u1", "member_id:k1")])
    assert r.outcome == "applied" and kinds(r) == [("conflict", "unique:user_id"), ("created", "first_seen")]
    assert g.lookup(ID("user_id:u2")) == "p1" and g.lookup(ID("user_id:u1")) is None
    assert g.lookup(ID("member_id:k1")) == "p1"
    # a profile that already has a user id refuses another one arriving later
    [r] = g.resolve_batch([R("m2", "anonymous_id:a1", "user_id:u3")])
    assert g.lookup(ID("user_id:u3")) != "p1" and r.profile_id != "p1"


def test_blocked_values_link_nothing(make: Callable[..., Any]) -> None:
    g = make()
    r = g.resolve_batch([R("m1", "anonymous_id:a1", "device_id:null"), R("m2", "anonymous_id:a2", "device_id:NULL"),
                         R("m3", "user_id:undefined", "email:0")])
    assert r[0].profile_id != r[1].profile_id
    assert kinds(r[0]) == [("blocked", "blocked_value"), ("created", "first_seen")]
    assert r[0].changes[0]["profile_id"] == r[0].profile_id
    assert r[2].outcome == "blocked" and r[2].profile_id is None
    assert kinds(r[2]) == [("blocked", "blocked_value"), ("blocked", "blocked_value")]
    assert g.lookup(ID("device_id:null")) is None and g.lookup(ID("user_id:undefined")) is None


def test_per_type_limit_refuses_links_and_merges(make: Callable[..., Any]) -> None:
    g = make(IdentityRules(limits={"device_id": 2}))
    r = g.resolve_batch([R("m1", "user_id:u1", "device_id:d1", "device_id:d2", "device_id:d3")])
    assert ("blocked", "limit:device_id") in kinds(r[0])
    assert g.lookup(ID("device_id:d3")) is None
    r = g.resolve_batch([R("m2", "device_id:d4", "device_id:d5"), R("m3", "user_id:u1", "device_id:d4")])
    assert r[1].profile_id == "p1" and r[1].merged == ()  # merging would give p1 four devices
    assert ("blocked", "limit:device_id") in kinds(r[1])
    assert len([i for i in g.identifiers_of("p1") if i[0] == "device_id"]) == 2


def test_supernode_is_quarantined_and_never_merges_again(make: Callable[..., Any]) -> None:
    g = make(IdentityRules(supernode_max_merges=2, supernode_max_links=None))
    anon = [R(f"a{i}", f"anonymous_id:a{i}") for i in range(5)]
    g.resolve_batch(anon)
    r = g.resolve_batch([R(f"d{i}", "device_id:kiosk", f"anonymous_id:a{i}") for i in range(5)])
    assert [len(x.merged) for x in r] == [0, 1, 1, 0, 0]
    assert kinds(r[3])[0] == ("quarantined", "supernode")
    assert g.lookup(ID("anonymous_id:a3")) != g.lookup(ID("anonymous_id:a0"))
    assert not any(c["type"] == "quarantined" for c in r[4].changes)  # reported once
    [only] = g.resolve_batch([R("x", "device_id:kiosk")])
    assert only.outcome == "blocked" and only.profile_id is None


def test_order_id_joins_an_existing_identifier_like_a_new_one(make: Callable[..., Any]) -> None:
    """An order id reported by two sources joins them whatever arrived first (invariant 3): an
    identifier already known elsewhere is joined exactly as a brand-new one is."""
    g = make()
    r = g.resolve_batch([R("m1", "user_id:u1", "order_id:o1"), R("m2", "anonymous_id:a2", "order_id:o1"),
                         R("m3", "anonymous_id:a9"), R("m4", "anonymous_id:a9", "order_id:o1")])
    assert r[1].profile_id == "p1"  # a brand-new identifier joins the order's owner
    assert r[3].profile_id == "p1" and r[3].merged == ("p2",)  # so does one known before
    assert g.lookup(ID("anonymous_id:a9")) == g.lookup(ID("order_id:o1")) == "p1"
    # the same events in the other order: the same components
    h = make()
    h.resolve_batch([R("m3", "anonymous_id:a9"), R("m1", "user_id:u1", "order_id:o1"),
                     R("m4", "anonymous_id:a9", "order_id:o1"), R("m2", "anonymous_id:a2", "order_id:o1")])
    ids = [ID(x) for x in ("user_id:u1", "order_id:o1", "anonymous_id:a2", "anonymous_id:a9")]
    assert len({h.lookup(i) for i in ids}) == 1 and len({g.lookup(i) for i in ids}) == 1
    # two identified people never share an order id (uniqueness still wins)
    [c] = g.resolve_batch([R("m5", "user_id:u2", "order_id:o1")])
    assert c.profile_id != "p1" and ("conflict", "unique:user_id") in kinds(c)


def test_no_merge_types_attach_but_never_merge_when_configured(make: Callable[..., Any]) -> None:
    g = make(IdentityRules(no_merge_types=frozenset({"order_id"})))
    r = g.resolve_batch([R("m1", "user_id:u1", "order_id:o1"), R("m3", "anonymous_id:a9"), R("m4", "anonymous_id:a9", "order_id:o1")])
    assert r[2].profile_id == "p2" and r[2].merged == ()
    assert kinds(r[2]) == [("conflict", "no_merge:order_id")] and r[2].refused == ("order_id:o1",)
    assert g.lookup(ID("order_id:o1")) == "p1"


def test_replay_with_other_claims_is_duplicate_and_same_claims_is_applied(make: Callable[..., Any]) -> None:
    g = make()
    reqs = [R("m1", "anonymous_id:a1"), R("m2", "anonymous_id:a2", "device_id:d1"),
            R("m3", "anonymous_id:a1", "device_id:d1", "email:null"), R("m4", "anonymous_id:a1")]
    first = g.resolve_batch(reqs)
    idents = ["anonymous_id:a1", "anonymous_id:a2", "device_id:d1"]
    before = snapshot(g, idents)
    again = g.resolve_batch(reqs)  # redelivery after a crash before commit: the same answers again
    assert again == first and all(r.outcome == "applied" for r in again)
    dups = g.resolve_batch([R(r.message_id, "x:y", claim=r.claim + "-2") for r in reqs])
    assert [r.outcome for r in dups] == ["duplicate"] * 4 and all(r.changes == () for r in dups)
    assert snapshot(g, idents) == before
    # inside one batch, a second record with the same message id is a duplicate too
    r = g.resolve_batch([R("m9", "anonymous_id:b1"), R("m9", "anonymous_id:b2", claim="touchpoints/1/7")])
    assert [x.outcome for x in r] == ["applied", "duplicate"] and g.lookup(ID("anonymous_id:b2")) is None


def test_erased_people_stay_erased_on_replay(make: Callable[..., Any]) -> None:
    g = make()
    reqs = [R("m1", "user_id:u1", "anonymous_id:a1"), R("m2", "anonymous_id:a2"), R("m3", "anonymous_id:a2", "anonymous_id:a1"),
            R("m4", "anonymous_id:other")]
    g.resolve_batch(reqs)
    e = g.erase(ID("anonymous_id:a2"))
    assert e.profile_id == "p1" and e.profile_ids == ("p1", "p2") and e.refused is None
    assert set(e.identifiers) == {ID("user_id:u1"), ID("anonymous_id:a1"), ID("anonymous_id:a2")}
    for i in e.identifiers:
        assert g.lookup(i) is None
    assert g.current_profile("p1") is None and g.current_profile("p2") is None and g.identifiers_of("p1") == []
    replay = g.resolve_batch(reqs)  # same claims: the redelivery path must not resurrect either
    assert [r.outcome for r in replay] == ["erased", "erased", "erased", "applied"]
    replay = g.resolve_batch([R(r.message_id + "-new", *(f"{k}:{v}" for k, v in r.identifiers)) for r in reqs])
    assert [r.outcome for r in replay] == ["erased", "erased", "erased", "applied"]
    assert all(r.changes == () and r.profile_id is None for r in replay[:3])
    # an event carrying any suppressed identifier is dropped whole: nothing new gets linked
    [r] = g.resolve_batch([R("m5", "anonymous_id:a1", "device_id:fresh")])
    assert r.outcome == "erased" and g.lookup(ID("device_id:fresh")) is None
    assert g.lookup(ID("anonymous_id:other")) is not None


def test_erase_unknown_and_blocked_identifiers(make: Callable[..., Any]) -> None:
    g = make()
    e = g.erase(ID("email:abc123"))
    assert e.profile_id is None and e.identifiers == (ID("email:abc123"),)
    [r] = g.resolve_batch([R("m1", "email:abc123", "anonymous_id:a1")])
    assert r.outcome == "erased"
    e = g.erase(ID("device_id:null"))
    assert e.refused == "blocked_value" and e.identifiers == ()


def test_why_explains_the_chain_of_links(make: Callable[..., Any]) -> None:
    g = make()
    g.resolve_batch([R("m1", "anonymous_id:a1", "device_id:d1"), R("m2", "anonymous_id:a2", "email:e2"),
                     R("m3", "user_id:u1", "email:e2", "device_id:d1"), R("m4", "user_id:u1", "phone:h1"),
                     R("m5", "anonymous_id:lone")])
    chain = g.why(ID("anonymous_id:a1"), ID("anonymous_id:a2"))
    assert [(s["from"], s["to"], s["message_id"]) for s in chain] == [
        ("anonymous_id:a1", "device_id:d1", "m1"), ("device_id:d1", "email:e2", "m3"), ("email:e2", "anonymous_id:a2", "m2")]
    assert all(s["rule"] == "co_occurrence" for s in chain)
    assert [s["message_id"] for s in g.why(ID("phone:h1"), ID("anonymous_id:a2"))] == ["m4", "m3", "m2"]
    assert g.why(ID("anonymous_id:a1"), ID("anonymous_id:a1")) == []
    assert g.why(ID("anonymous_id:a1"), ID("anonymous_id:lone")) is None
    assert g.why(ID("anonymous_id:a1"), ID("anonymous_id:nobody")) is None


# -- properties against Redis (fewer examples than the in-memory ones) ---------------------------

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(events=conflict_free_traffic(), cuts=st.lists(st.integers(0, 30), max_size=6))
def test_redis_graph_equals_oracle_components(redis_url: str, events: list[tuple[Identifier, ...]], cuts: list[int]) -> None:
    g = RedisTwin(redis_url, CONFLICT_FREE_RULES)
    try:
        folder = Folder()
        for batch in split(to_requests(events), cuts):
            for res in g.resolve_batch(batch):
                assert res.outcome == "applied"
                folder.apply(res)
        check_components(events, g.lookup, g.identifiers_of, folder.live)
    finally:
        g.close()


@PROPS
@given(events=conflict_free_traffic(max_events=40), cuts=st.lists(st.integers(0, 40), max_size=8), data=st.data())
def test_two_workers_on_one_redis_give_the_oracle_components(redis_url: str, events: list[tuple[Identifier, ...]],
                                                             cuts: list[int], data: st.DataObject) -> None:
    """Two RedisIdentityGraph clients resolve interleaved batches concurrently (invariant 3)."""
    g = RedisTwin(redis_url, CONFLICT_FREE_RULES)
    try:
        other = RedisIdentityGraph(Redis.from_url(redis_url), g.namespace, CONFLICT_FREE_RULES)
        batches = split(to_requests(events), cuts)
        owner = [data.draw(st.booleans()) for _ in batches]

        async def worker(graph: RedisIdentityGraph, mine: list[list[ResolveRequest]]) -> list[Resolution]:
            out: list[Resolution] = []
            for b in mine:
                out.extend(await graph.resolve_batch(b))
                await asyncio.sleep(0)
            return out

        async def both() -> list[list[Resolution]]:
            try:
                return list(await asyncio.gather(
                    worker(g.graph, [b for b, o in zip(batches, owner, strict=True) if o]),
                    worker(other, [b for b, o in zip(batches, owner, strict=True) if not o])))
            finally:
                await other.redis.aclose()

        results = g.run(both())
        idents = {i for ids in events for i in ids}
        owners = {i: g.lookup(i) for i in idents}
        assert all(r.outcome == "applied" for rs in results for r in rs)
        check_components(events, g.lookup, g.identifiers_of, set(owners.values()))
    finally:
        g.close()


Op = tuple[str, Any]


def ops_strategy() -> st.SearchStrategy[list[Op]]:
    resolve = st.tuples(st.just("resolve"), conflicting_traffic(max_events=8))
    erase = st.tuples(st.just("erase"), st.sampled_from([("anonymous_id", "a1"), ("user_id", "u0"), ("device_id", "d0"),
                                                          ("email", "e1"), ("device_id", "null")]))
    redo = st.tuples(st.just("redo"), st.integers(0, 50))
    split = st.tuples(st.just("split"), st.tuples(st.booleans(), st.integers(0, 50), st.integers(0, 50)))
    return st.lists(st.one_of(resolve, resolve, resolve, erase, redo, split), min_size=1, max_size=8)


def _split_both(mem: MemoryIdentityGraph, red: RedisTwin, idents: list[Identifier], arg: tuple[bool, int, int]) -> None:
    """The same split on both graphs: a detach, or a cut of the first step of a why chain (or
    of a pair with no recorded link, refused by both with the same reason)."""
    if not idents:
        return
    detach, i, j = arg
    a, b = idents[i % len(idents)], idents[j % len(idents)]
    if detach:
        how: dict[str, Any] = {"detach": a}
    else:
        chain = mem.why(a, b)
        how = {"cut": (ID(chain[0]["from"]), ID(chain[0]["to"])) if chain else (a, b)}
    outcomes = []
    for g in (mem, red):
        try:
            outcomes.append(g.split(5000, **how))
        except SplitError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


@PROPS
@given(ops=ops_strategy(), tight=st.booleans())
def test_redis_and_memory_agree_exactly_on_conflicting_traffic(redis_url: str, ops: list[Op], tight: bool) -> None:
    """Differential test: same outcomes, profile ids, merges, audit records and final graph."""
    rules = TIGHT_RULES if tight else IdentityRules()
    mem, red = MemoryIdentityGraph(rules), RedisTwin(redis_url, rules)
    try:
        sent: list[ResolveRequest] = []
        events: list[tuple[Identifier, ...]] = []
        resolutions: list[Resolution] = []
        for kind, arg in ops:
            if kind == "resolve":
                reqs = [ResolveRequest(f"m{len(sent) + i}", f"t/0/{len(sent) + i}", ids, 1000 + i) for i, ids in enumerate(arg)]
                sent.extend(reqs)
                events.extend(arg)
                a, b = mem.resolve_batch(reqs), red.resolve_batch(reqs)
                assert a == b
                resolutions.extend(a)
            elif kind == "erase":
                assert mem.erase(arg) == red.erase(arg)
            elif kind == "split":
                _split_both(mem, red, sorted({i for ids in events for i in ids}), arg)
            elif sent:  # redelivery of an earlier record, same claim
                req = sent[arg % len(sent)]
                assert mem.resolve_batch([req]) == red.resolve_batch([req])
        idents = sorted({i for ids in events for i in ids})
        assert [mem.lookup(i) for i in idents] == [red.lookup(i) for i in idents]
        for pid in {p for i in idents if (p := mem.lookup(i))}:
            assert mem.identifiers_of(pid) == red.identifiers_of(pid)
        for a, b in zip(idents, idents[1:], strict=False):
            assert mem.why(a, b) == red.why(a, b)
            assert mem.explain(a, b) == red.explain(a, b)
        check_rule_invariants(events, rules, red.lookup, red.identifiers_of, resolutions)
    finally:
        red.close()


# -- Redis-only behaviour -------------------------------------------------------------------------

def test_every_key_is_namespaced_and_suppression_keeps_no_values(redis_url: str) -> None:
    g = RedisTwin(redis_url, IdentityRules(supernode_max_merges=1))
    try:
        g.resolve_batch([R("m1", "email:cafe01", "anonymous_id:a1"), R("m2", "anonymous_id:a2"),
                         R("m3", "anonymous_id:a2", "email:cafe01"), R("m4", "anonymous_id:a3"),
                         R("m5", "anonymous_id:a3", "email:cafe01")])
        keys = g.keys()
        assert keys and all(k.startswith(g.namespace + ":") for k in keys)
        assert {k.split(":")[1] for k in keys} >= {"id", "p", "pm", "pe", "pl", "fwd", "seq", "dedup", "dres", "deg", "quar"}
        g.erase(ID("email:cafe01"))
        keys = g.keys()
        assert not any("cafe01" in k for k in keys if k.split(":")[1] not in ("dres",))
        assert f"{g.namespace}:supp:{suppression_digest('email:cafe01')}" in keys
    finally:
        g.close()


def test_script_cache_flush_is_recovered(redis_url: str) -> None:
    g = RedisTwin(redis_url, IdentityRules())
    try:
        g.resolve_batch([R("m1", "anonymous_id:a1")])
        g.run(g.client.script_flush())
        [r] = g.resolve_batch([R("m2", "anonymous_id:a1", "device_id:d1")])
        assert r.outcome == "applied" and r.profile_id == "p1"
        g.run(g.client.script_flush())
        assert g.erase(ID("device_id:d1")).profile_id == "p1"
    finally:
        g.close()


def test_decode_responses_client_works(redis_url: str) -> None:
    g = RedisTwin(redis_url, IdentityRules(), decode_responses=True)
    try:
        r = g.resolve_batch([R("m1", "anonymous_id:a1"), R("m2", "anonymous_id:a2"), R("m3", "anonymous_id:a1", "anonymous_id:a2")])
        assert r[2].merged == ("p2",) and g.identifiers_of("p2") == [ID("anonymous_id:a1"), ID("anonymous_id:a2")]
        assert g.resolve_batch([r_ for r_ in [R("m3", "anonymous_id:a1", "anonymous_id:a2")]]) == [r[2]]
        assert len(g.why(ID("anonymous_id:a1"), ID("anonymous_id:a2"))) == 1
        assert g.erase(ID("anonymous_id:a1")).profile_ids == ("p1", "p2")
    finally:
        g.close()


def test_empty_batch_is_free(redis_url: str) -> None:
    g = RedisTwin(redis_url, IdentityRules())
    try:
        assert g.resolve_batch([]) == []
        assert g.keys() == []
    finally:
        g.close()


# -- several events per script call (RedisIdentityGraph events_per_call) ------------------------

def _with_per_call(twin: RedisTwin, per_call: int) -> RedisTwin:
    twin.graph = RedisIdentityGraph(twin.client, twin.namespace, twin.rules, events_per_call=per_call)
    return twin


def _state(twin: RedisTwin) -> dict[str, Any]:
    """Every key of the namespace (prefix cut) with its type, encoding and value; hash fields and
    list items in Redis's own order, set members sorted; whether it has a TTL."""
    async def dump() -> dict[str, Any]:
        c = twin.client
        out: dict[str, Any] = {}
        async for key in c.scan_iter(match=twin.namespace + ":*", count=1000):
            kind = (await c.type(key)).decode()
            if kind == "string":
                value: Any = await c.get(key)
            elif kind == "hash":
                value = list((await c.hgetall(key)).items())
            elif kind == "list":
                value = await c.lrange(key, 0, -1)
            else:
                value = sorted(await c.smembers(key))
            out[key.decode()[len(twin.namespace) + 1:]] = (kind, await c.object("encoding", key), value, await c.ttl(key) > 0)
        return out
    return twin.run(dump())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=conflicting_traffic(max_events=30), redo=st.lists(st.integers(0, 29), max_size=6), tight=st.booleans(),
       per_call=st.sampled_from([2, 3, 7, 50]), long_ids=st.booleans())
def test_several_events_per_call_equal_one_call_per_event(redis_url: str, events: list[tuple[Identifier, ...]],
                                                          redo: list[int], tight: bool, per_call: int, long_ids: bool) -> None:
    """Same replies, and the same keys, values, hash/list order and encodings in Redis, whether a
    batch is sent as one script call per event or as runs of several events per call (also with
    duplicates, redeliveries and values long enough to make the hashes hashtables)."""
    rules = TIGHT_RULES if tight else IdentityRules()
    if long_ids:
        events = [tuple((t, v * 40) for t, v in ids) for ids in events]
    reqs = to_requests(events)
    reqs += [reqs[i % len(reqs)] for i in redo]  # redeliveries, same claims
    reqs += [ResolveRequest(r.message_id, r.claim + "/other", r.identifiers, r.ts_ms) for r in reqs[:3]]  # duplicates
    one, many = _with_per_call(RedisTwin(redis_url, rules), 1), _with_per_call(RedisTwin(redis_url, rules), per_call)
    try:
        for part in split(reqs, [5, 17, 30]):
            assert one.resolve_batch(part) == many.resolve_batch(part)
        assert _state(one) == _state(many)
    finally:
        one.close()
        many.close()


def test_script_cache_flush_with_several_calls_per_batch(redis_url: str) -> None:
    g = _with_per_call(RedisTwin(redis_url, IdentityRules()), 2)
    try:
        g.resolve_batch([R("m1", "anonymous_id:a1")])
        g.run(g.client.script_flush())
        res = g.resolve_batch([R(f"m{i}", "anonymous_id:a1", f"device_id:d{i}") for i in range(2, 7)])
        assert [r.profile_id for r in res] == ["p1"] * 5
        assert g.identifiers_of("p1") == [ID(f"device_id:d{i}") for i in range(2, 7)] + [ID("anonymous_id:a1")]
    finally:
        g.close()


def test_a_failing_event_does_not_stop_the_others_of_its_call(redis_url: str) -> None:
    """Like one call per event: the failing event's error is reported, the events after it still run."""
    g = RedisTwin(redis_url, IdentityRules())
    try:
        g.resolve_batch([R("m1", "anonymous_id:a1")])
        g.run(g.client.set(f"{g.namespace}:pm:p1", "not a hash"))  # HGETALL of p1's meta fails
        with pytest.raises(Exception, match="m2"):
            g.resolve_batch([R("m2", "anonymous_id:a1"), R("m3", "anonymous_id:a3")])
        assert g.lookup(ID("anonymous_id:a3")) == "p2"
        assert g.resolve_batch([R("m3", "anonymous_id:a3")])[0].profile_id == "p2"  # redelivery
    finally:
        g.close()


def test_known_person_over_a_lowered_limit_is_refused_like_the_plan_does(redis_url: str) -> None:
    """The fast path for an event of one known profile defers to the full plan when the profile
    holds more of a type than a (since lowered) limit allows."""
    loose = RedisTwin(redis_url, IdentityRules())
    try:
        loose.resolve_batch([R("m1", "device_id:d1", "device_id:d2", "device_id:d3")])
        tight = RedisTwin(redis_url, IdentityRules(limits={"device_id": 2}), namespace=loose.namespace)
        try:
            [res] = tight.resolve_batch([R("m2", "device_id:d1")])
            assert res.outcome == "blocked" and res.profile_id is None
            assert kinds(res) == [("blocked", "limit:device_id")] and res.changes[0]["from_profile_id"] == "p1"
            [ok] = tight.resolve_batch([R("m3", "anonymous_id:a9")])
            assert ok.outcome == "applied" and ok.profile_id == "p2"
        finally:
            tight.close()
    finally:
        loose.close()


# -- link breaker (issue 17 item 2): one shared value cannot gather identifiers one at a time --------

def _agree(g: Any, reqs: Sequence[ResolveRequest], res: Sequence[Resolution]) -> None:
    """What the profiles stage folds (the event minus ``refused``) is what the graph holds."""
    for req, r in zip(reqs, res, strict=True):
        if r.profile_id is None:
            continue
        kept = [i for i in req.identifiers if f"{i[0]}:{i[1]}" not in r.refused]
        assert kept, r
        for i in kept:
            assert g.lookup(i) == g.current_profile(r.profile_id), (req, r)
        for f in r.refused:
            assert g.lookup(ID(f)) != g.current_profile(r.profile_id)


def test_eight_pos_cards_sharing_one_phone_are_not_gathered(make: Callable[..., Any]) -> None:
    g = make()
    reqs = [R(f"pos{i}", f"pos_card_id:C{i}", "phone:h13800000000", f"order_id:o{i}") for i in range(8)]
    res = g.resolve_batch(reqs)
    profiles = [r.profile_id for r in res]
    # a value sitting with one card never brings in another (pos_card_id's link threshold is 0)
    assert profiles[0] == "p1" and len(set(profiles)) == 8
    assert kinds(res[1])[0] == ("quarantined", "supernode") and res[1].changes[0]["from_profile_id"] == "p1"
    assert all(r.refused == ("phone:h13800000000",) for r in res[1:])
    assert [i for i in g.identifiers_of("p1") if i[0] == "pos_card_id"] == [ID("pos_card_id:C0")]
    _agree(g, reqs, res)
    # with a looser threshold the phone gathers two more cards, then trips; the gathering is
    # recorded on the audit trail (restored by `identity rebuild`)
    h = make(IdentityRules(supernode_links_by_type={}))
    res = h.resolve_batch(reqs)
    assert [r.profile_id for r in res[:3]] == ["p1"] * 3 and "p1" not in [r.profile_id for r in res[3:]]
    assert res[1].changes[-1]["gathered"] == {"phone:h13800000000": {"pos_card_id": 1}}
    assert ("quarantined", "supernode") in kinds(res[3])
    _agree(h, reqs, res)
    # an event with the phone alone resolves nowhere (the phone links nothing any more)
    [alone] = g.resolve_batch([R("alone", "phone:h13800000000")])
    assert alone.outcome == "blocked" and alone.refused == ("phone:h13800000000",)


def test_gathering_through_a_merge_blames_the_shared_value_not_the_card(make: Callable[..., Any]) -> None:
    g = make(IdentityRules(supernode_max_links=0))
    reqs = [R("a", "user_id:ua", "pos_card_id:CA"), R("b", "user_id:ub", "pos_card_id:CB"), R("c", "pos_card_id:CC"),
            R("ap", "pos_card_id:CA", "phone:hP"), R("bp", "pos_card_id:CB", "phone:hP"), R("cp", "pos_card_id:CC", "phone:hP")]
    res = g.resolve_batch(reqs)
    assert [c["identifiers"] for c in res[4].changes if c["type"] == "quarantined"] == [["phone:hP"]]
    assert g.lookup(ID("pos_card_id:CB")) == g.lookup(ID("user_id:ub")) != g.lookup(ID("user_id:ua"))
    assert g.lookup(ID("pos_card_id:CC")) not in (g.lookup(ID("user_id:ua")), g.lookup(ID("user_id:ub")))
    _agree(g, reqs, res)


def test_limit_refusal_through_a_shared_value_trips_the_breaker(make: Callable[..., Any]) -> None:
    g = make(IdentityRules(limits={"pos_card_id": 1}, supernode_max_links=5, supernode_links_by_type={}))
    reqs = [R(f"e{i}", f"pos_card_id:C{i}", "phone:hS") for i in range(8)]
    res = g.resolve_batch(reqs)
    # each further card is refused by the limit and counted as gathered: the 6th attempt trips
    assert [r.profile_id for r in res[:6]] == ["p1"] * 6 and res[6].profile_id != "p1"
    assert ("quarantined", "supernode") in kinds(res[6])
    _agree(g, reqs, res)
    assert [i for i in g.identifiers_of("p1") if i[0] == "pos_card_id"] == [ID("pos_card_id:C0")]


def test_a_person_with_a_few_devices_is_not_a_supernode(make: Callable[..., Any]) -> None:
    g = make()
    reqs = [R(f"d{i}", "email:hann", f"device_id:d{i}") for i in range(5)] + [R("o", "email:hann", f"order_id:o{i}") for i in range(1)]
    reqs += [R(f"o{i}", "email:hann", f"order_id:o{i}") for i in range(1, 30)]
    res = g.resolve_batch(reqs)
    assert {r.profile_id for r in res} == {"p1"} and all(r.refused == () for r in res)


# -- order independence with order ids, limits and quarantine in play (issue 17 item 5) -------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=order_traffic(max_events=30), seed=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 30), max_size=5))
def test_redis_graph_is_order_independent_with_orders_limits_and_quarantine(redis_url: str, t: Any, seed: Any, cuts: list[int]) -> None:
    events, shared = t
    order = list(range(len(events)))
    seed.shuffle(order)
    for o, c in ((list(range(len(events))), []), (order, cuts)):
        g = RedisTwin(redis_url, ORDER_RULES)
        try:
            for b in order_batches(order_requests(events, o), c):
                g.resolve_batch(b)
            check_order_independence(events, shared, g.lookup,
                                     lambda i, g=g: bool(g.run(g.client.exists(f"{g.namespace}:quar:{i[0]}:{i[1]}"))))
        finally:
            g.close()


# -- why for any pair (issue 17 item 6) -------------------------------------------------------------

def test_why_names_the_refusing_rule_for_unlinked_pairs(make: Callable[..., Any]) -> None:
    g = make(IdentityRules(limits={"device_id": 2}, supernode_max_links=None, supernode_max_merges=1))
    g.resolve_batch([R("m1", "user_id:u1", "device_id:d1"), R("m2", "user_id:u2", "device_id:d1"),
                     R("m3", "device_id:d2", "device_id:d3"), R("m4", "anonymous_id:a1", "device_id:d4"),
                     R("m5", "anonymous_id:x1"), R("m6", "anonymous_id:x2"), R("m7", "anonymous_id:x3"),
                     R("m8", "device_id:k", "anonymous_id:x1"), R("m9", "device_id:k", "anonymous_id:x2"),
                     R("m10", "device_id:k", "anonymous_id:x3")])
    linked = g.explain(ID("user_id:u1"), ID("device_id:d1"))
    assert linked["linked"] and linked["chain"][0]["message_id"] == "m1"
    cases = {("user_id:u2", "user_id:u1"): "unique:user_id", ("user_id:u2", "device_id:d1"): "unique:user_id",
             ("device_id:d2", "device_id:d1"): "limit:device_id", ("anonymous_id:a1", "user_id:u1"): "never_met",
             ("device_id:null", "user_id:u1"): "blocked_value", ("anonymous_id:x3", "device_id:k"): "supernode",
             ("anonymous_id:nobody", "user_id:u1"): "unknown"}
    for (a, b), rule in cases.items():
        ans = g.explain(ID(a), ID(b))
        assert not ans["linked"] and ans["rule"] == rule, (a, b, ans)
    assert "m10" in g.explain(ID("anonymous_id:x3"), ID("device_id:k"))["detail"]


def test_both_graphs_apply_the_rules_of_a_file(make: Callable[..., Any], tmp_path: Any) -> None:
    """One rule set from TOUCHPOINT_IDENTITY_RULES drives the Lua script and the twin alike."""
    from streams.identity.rules_file import load_rules

    path = tmp_path / "rules.toml"
    path.write_text("unique_types = ['user_id', 'crm_id']\n[limits]\ndevice_id = 1\n"
                    "[blocked.types.device_id]\nextra_patterns = ['kiosk-.*']\n[supernode]\nmax_links = 0\n")
    g = make(load_rules(path))
    r = g.resolve_batch([R("m1", "crm_id:c1", "device_id:d1"), R("m2", "crm_id:c2", "device_id:d1"),
                         R("m3", "user_id:u1", "device_id:kiosk-7"), R("m4", "user_id:u1", "device_id:d2"),
                         R("m5", "user_id:u1", "device_id:d3")])
    assert ("conflict", "unique:crm_id") in kinds(r[1])  # crm_id made unique by the file
    assert kinds(r[2])[0] == ("blocked", "blocked_pattern") and g.lookup(ID("device_id:kiosk-7")) is None
    assert ("blocked", "limit:device_id") in kinds(r[4])  # one device per profile
    assert r[4].refused == ("device_id:d3",)


def test_why_survives_a_control_character_in_a_message_id(make: Callable[..., Any]) -> None:
    """Issue 21: a messageId holding the link separator (\\x1f) made why() fail for that profile for good."""
    g = make()
    g.resolve_batch([R("a\x1fb", "anonymous_id:a1", "device_id:d1"), R("m2", "anonymous_id:a2"),
                     R("c\x1fd\x1f", "anonymous_id:a2", "device_id:d1")])
    chain = g.why(ID("anonymous_id:a1"), ID("anonymous_id:a2"))
    assert [s["message_id"] for s in chain] == ["a\x1fb", "c\x1fd\x1f"]
    assert g.explain(ID("anonymous_id:a1"), ID("anonymous_id:a2"))["linked"]


def test_erasure_also_finds_what_an_older_version_stored(redis_url: str) -> None:
    """Identifiers an older version stored raw or hashed differently (a userId that is an email,
    an email with a zero-width space, a merely possible phone) are erased by the value as typed."""
    from streams.identity.erasure import erase_person
    from streams.identity.identifiers import RefusedIdentifier, legacy_forms, stored_identifier
    from streams.ingest.pii import PiiHasher

    hasher = PiiHasher("k")
    g = RedisTwin(redis_url, IdentityRules())
    try:
        old = [("user_id", "Ann@X.com"), ("email", hasher.hash("email", "ann\u200b@x.com")), ("phone", hasher.hash("phone", "+8612345"))]
        g.resolve_batch([ResolveRequest("m1", "t/0/1", (old[0], ("anonymous_id", "a1")), 1),
                         ResolveRequest("m2", "t/0/2", (old[1], ("anonymous_id", "a2")), 2),
                         ResolveRequest("m3", "t/0/3", (old[2], ("anonymous_id", "a3")), 3)])
        sent: list[bytes] = []

        async def send(key: bytes, value: bytes) -> None:
            sent.append(value)

        for text, stored in (("user_id:Ann@X.com", old[0]), ("email:ann\u200b@x.com", old[1]), ("phone:12345", old[2])):
            legacy = legacy_forms(text, hasher)
            assert stored in legacy
            try:
                ident = stored_identifier(text, hasher)
            except RefusedIdentifier:
                ident = None
            result = g.run(erase_person(g.graph, ident, send, send, 9, legacy))
            assert result.profile_id is not None and g.lookup(stored) is None, text
        # the erasure records name no identifier, only the suppression digests
        erased = [orjson.loads(v) for v in sent if b'"erased"' in v and b'"control"' not in v]
        assert len([r for r in erased if r["profile_id"]]) == 3 and all(r["identifiers"] == [] for r in erased)
        assert {suppression_digest(f"{k}:{v}") for k, v in old} <= {d for r in erased for d in r["suppressed"]}
        assert not any(b"Ann@X.com" in v or b"anonymous_id:a" in v for v in sent)
        assert legacy_forms("user_id:plain-id", hasher) == [] and legacy_forms("passport:1", hasher) == []
    finally:
        g.close()


def test_the_way_back_after_an_erasure(make: Callable[..., Any]) -> None:
    """Erased at T: everything carrying its identifiers is dropped until a consented event after T
    readmits the ones it carries (streams/identity/rights.py); events before T stay dropped, and
    the identifiers not readmitted too; an erasure without a time ("1") is never readmitted."""
    g = make()
    T = 1_700_000_500_000
    g.resolve_batch([R("m1", "user_id:u1", "email:e1", "anonymous_id:a1")])
    assert g.erase(ID("user_id:u1"), T).profile_id == "p1"
    email = suppression_digest("email:e1")
    assert g.readmit([email], T) == [] and g.readmit([suppression_digest("email:nobody")], T + 1) == []
    [before] = g.resolve_batch([R("m2", "email:e1", ts=T + 5)])
    assert before.outcome == "erased"
    assert g.readmit([email, suppression_digest("anonymous_id:zz")], T + 5) == [email]
    assert g.readmit([email], T + 6) == []  # once
    r = g.resolve_batch([R("m3", "email:e1", "anonymous_id:new", ts=T + 5), R("m4", "email:e1", ts=T - 1),
                         R("m5", "email:e1", "user_id:u1", ts=T + 9)])
    assert [x.outcome for x in r] == ["applied", "erased", "erased"] and r[0].profile_id == "p2"
    assert g.identifiers_of("p2") == [ID("email:e1"), ID("anonymous_id:new")]
    g.resolve_batch([R("m6", "user_id:u9")])
    g.erase(ID("user_id:u9"))  # no time: never readmitted
    assert g.readmit([suppression_digest("user_id:u9")], T * 2) == []


def test_erasure_removes_the_stored_replies_that_name_the_person(make: Callable[..., Any]) -> None:
    """Stored replies (dres) of the person's non-trivial resolutions name her identifiers: an erasure
    removes them; a redelivery of one of those events is dropped as erased, as before."""
    g = make()
    g.resolve_batch([R("m1", "user_id:u1", "anonymous_id:a1"), R("m2", "anonymous_id:a2"), R("m3", "anonymous_id:a2", "anonymous_id:a1"),
                     R("k1", "user_id:u2", "anonymous_id:b1")])
    stored = (lambda: {k.rsplit(":", 1)[1] for k in g.keys() if ":dres:" in k}) if hasattr(g, "keys") else (lambda: set(g._dres))
    assert {"m1", "m3", "k1"} <= stored()
    g.erase(ID("anonymous_id:a2"), 1_700_000_100_000)
    assert stored() & {"m1", "m2", "m3"} == set() and "k1" in stored()
    [again] = g.resolve_batch([R("m3", "anonymous_id:a2", "anonymous_id:a1")])
    assert again.outcome == "erased"
