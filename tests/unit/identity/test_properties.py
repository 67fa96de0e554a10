"""Property tests of the in-memory identity graph against the union-find oracle (invariants 2-4).

The strategies and checkers here are reused by tests/contracts/test_identity_graph.py to run the
same properties against Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.identity import IdentityRules, MemoryIdentityGraph, Resolution, ResolveRequest
from streams.identity.model import Identifier, parse
from touchpoint_tools.oracle import UnionFind, components, partition_of

TYPES = ("user_id", "member_id", "crm_id", "email", "phone", "wechat_unionid", "wechat_openid",
         "pos_card_id", "device_id", "anonymous_id")
# Conflict-free by construction below; the breakers are order-dependent by design, so they are off
# (test_order_independence.py proves the class of supernodes they handle order-independently).
CONFLICT_FREE_RULES = IdentityRules(supernode_max_merges=None, supernode_max_links=None)
# Small numbers so that conflicts, limits and quarantine all happen in short random traffic.
TIGHT_RULES = IdentityRules(limits={"device_id": 2, "anonymous_id": 3, "order_id": 2, "email": 2},
                            default_limit=3, supernode_max_merges=2)


@st.composite
def conflict_free_traffic(draw: st.DrawFn, max_people: int = 6, max_events: int = 30) -> list[tuple[Identifier, ...]]:
    """Events that each carry identifiers of one person; persons never share identifiers and hold
    at most one value per unique type and at most two per other type, so no rule can fire."""
    n_people = draw(st.integers(1, max_people))
    people: list[list[Identifier]] = []
    for p in range(n_people):
        ids: list[Identifier] = []
        for t in TYPES:
            k = draw(st.integers(0, 1 if t in ("user_id", "member_id") else 2))
            ids.extend((t, f"{t[:4]}-{p}-{j}") for j in range(k))
        people.append(ids or [("anonymous_id", f"anon-{p}-x")])
    n_events = draw(st.integers(1, max_events))
    return [tuple(draw(st.lists(st.sampled_from(person), min_size=1, max_size=4, unique=True)))
            for person in (draw(st.sampled_from(people)) for _ in range(n_events))]


POOL: tuple[Identifier, ...] = (
    ("user_id", "u0"), ("user_id", "u1"), ("user_id", "u2"), ("member_id", "m0"), ("member_id", "m1"),
    ("email", "e0"), ("email", "e1"), ("email", "e2"), ("device_id", "d0"), ("device_id", "d1"),
    ("device_id", "d2"), ("device_id", "d3"), ("anonymous_id", "a0"), ("anonymous_id", "a1"),
    ("anonymous_id", "a2"), ("anonymous_id", "a3"), ("anonymous_id", "a4"), ("anonymous_id", "a5"),
    ("order_id", "o0"), ("order_id", "o1"), ("device_id", "null"), ("anonymous_id", "0"),
)


def conflicting_traffic(max_events: int = 30) -> st.SearchStrategy[list[tuple[Identifier, ...]]]:
    """Anything goes: shared devices, several user ids, blocked values, order ids."""
    return st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True).map(tuple),
                    min_size=1, max_size=max_events)


def to_requests(events: Sequence[tuple[Identifier, ...]], tag: str = "") -> list[ResolveRequest]:
    return [ResolveRequest(f"m{i}", f"touchpoints/0/{i}{tag}", ids, 1_700_000_000_000 + i) for i, ids in enumerate(events)]


def split(items: Sequence[ResolveRequest], cuts: Sequence[int]) -> list[list[ResolveRequest]]:
    bounds = sorted({0, len(items), *(c for c in cuts if 0 < c < len(items))})
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


class Folder:
    """What the profiles stage does with resolutions: live profile set, folding losers."""

    def __init__(self) -> None:
        self.live: set[str] = set()

    def apply(self, res: Resolution) -> None:
        if res.outcome != "applied":
            return
        assert res.profile_id is not None
        for loser in res.merged:
            assert loser in self.live, f"merged unknown profile {loser}"
            self.live.discard(loser)
        self.live.add(res.profile_id)


def check_components(events: Sequence[tuple[Identifier, ...]], lookup: Callable[[Identifier], str | None],
                     identifiers_of: Callable[[str], list[Identifier]], live: set[str]) -> None:
    """Final graph == oracle components; every profile's identifier set matches its component."""
    owners = {ident: lookup(ident) for ids in events for ident in ids}
    assert None not in owners.values()
    expected = components(events)
    assert partition_of(owners) == expected
    for pid in set(owners.values()):
        assert pid is not None
        assert frozenset(identifiers_of(pid)) in expected
    assert live == set(owners.values()), "resolutions' merged lists must fold to the live profiles"


def check_rule_invariants(events: Sequence[tuple[Identifier, ...]], rules: IdentityRules,
                          lookup: Callable[[Identifier], str | None],
                          identifiers_of: Callable[[str], list[Identifier]],
                          resolutions: Sequence[Resolution]) -> None:
    """Invariant 4 after arbitrary traffic: uniqueness, blocked values, limits, order_id never merges."""
    pids = {p for ids in events for i in ids if (p := lookup(i)) is not None}
    for ids in events:
        for ident in ids:
            if rules.is_blocked(ident):
                assert lookup(ident) is None
    for pid in pids:
        idents = identifiers_of(pid)
        assert idents, pid
        counts: dict[str, int] = {}
        for kind, _ in idents:
            counts[kind] = counts.get(kind, 0) + 1
        for kind in rules.unique_types:
            assert counts.get(kind, 0) <= 1, f"{pid} holds two {kind}: {idents}"
        for kind, n in counts.items():
            assert n <= rules.limit(kind), f"{pid} exceeds the {kind} limit: {idents}"
        for ident in idents:
            assert lookup(ident) == pid
    for res in resolutions:
        for change in res.changes:
            if change["type"] == "merged":
                assert not any(parse(f)[0] in rules.no_merge_types for f in change["identifiers"])


def run_memory(events: Sequence[tuple[Identifier, ...]], cuts: Sequence[int], rules: IdentityRules
               ) -> tuple[MemoryIdentityGraph, list[Resolution]]:
    graph = MemoryIdentityGraph(rules)
    out: list[Resolution] = []
    for batch in split(to_requests(events), cuts):
        out.extend(graph.resolve_batch(batch))
    return graph, out


@settings(max_examples=400, deadline=None)
@given(events=conflict_free_traffic(), cuts=st.lists(st.integers(0, 30), max_size=6))
def test_memory_graph_equals_oracle_components(events: list[tuple[Identifier, ...]], cuts: list[int]) -> None:
    graph, resolutions = run_memory(events, cuts, CONFLICT_FREE_RULES)
    assert all(r.outcome == "applied" for r in resolutions)
    folder = Folder()
    for r in resolutions:
        folder.apply(r)
    check_components(events, graph.lookup, graph.identifiers_of, folder.live)


@settings(max_examples=200, deadline=None)
@given(events=conflict_free_traffic(), perm=st.randoms(use_true_random=False))
def test_component_result_does_not_depend_on_event_order(events: list[tuple[Identifier, ...]], perm) -> None:
    shuffled = list(events)
    perm.shuffle(shuffled)
    a, _ = run_memory(events, [], CONFLICT_FREE_RULES)
    b, _ = run_memory(shuffled, [3, 7], CONFLICT_FREE_RULES)
    idents = {i for ids in events for i in ids}
    assert partition_of({i: a.lookup(i) for i in idents}) == partition_of({i: b.lookup(i) for i in idents})


@settings(max_examples=150, deadline=None)
@given(events=conflict_free_traffic(max_events=15), redo=st.lists(st.integers(0, 14), max_size=8))
def test_replay_changes_nothing(events: list[tuple[Identifier, ...]], redo: list[int]) -> None:
    graph, first = run_memory(events, [], CONFLICT_FREE_RULES)
    reqs = to_requests(events)
    idents = sorted({i for ids in events for i in ids})
    before = {i: graph.lookup(i) for i in idents}
    picked = [reqs[i] for i in redo if i < len(reqs)]
    again = graph.resolve_batch(picked)  # same claims: redelivery after a crash
    for req, res in zip(picked, again, strict=True):
        was = first[int(req.message_id[1:])]
        # Non-trivial: the stored answer is replayed exactly. Trivial: the profile first reported,
        # not the current survivor (the profiles stage recognises the copy by its origin; found by
        # the kill -9 test as an event counted twice after a merge).
        assert res == was
    other = [ResolveRequest(r.message_id, r.claim + "-other", r.identifiers, r.ts_ms) for r in reqs]
    assert all(r.outcome == "duplicate" and r.changes == () for r in graph.resolve_batch(other))
    assert {i: graph.lookup(i) for i in idents} == before


@settings(max_examples=400, deadline=None)
@given(events=conflicting_traffic(), cuts=st.lists(st.integers(0, 30), max_size=4))
def test_rule_invariants_hold_on_conflicting_traffic(events: list[tuple[Identifier, ...]], cuts: list[int]) -> None:
    for rules in (TIGHT_RULES, IdentityRules()):
        graph, resolutions = run_memory(events, cuts, rules)
        check_rule_invariants(events, rules, graph.lookup, graph.identifiers_of, resolutions)
        folder = Folder()
        for r in resolutions:
            folder.apply(r)


def test_oracle_union_find() -> None:
    uf = UnionFind()
    for x in "abcde":
        uf.add(("t", x))
    uf.union(("t", "a"), ("t", "b"))
    uf.union(("t", "c"), ("t", "b"))
    assert uf.find(("t", "a")) == uf.find(("t", "c")) != uf.find(("t", "d"))
    assert components([[("t", "a"), ("t", "b")], [("t", "c")], [("t", "b"), ("t", "c")], [("t", "d")]]) == {
        frozenset({("t", "a"), ("t", "b"), ("t", "c")}), frozenset({("t", "d")})}
