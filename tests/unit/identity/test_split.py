"""Split on the in-memory graph, as properties (issue 17 item 5): whatever link of whatever profile
is cut, or whatever identifier detached, the profile becomes exactly two, the provenance of
each side still explains every pair in it, and no later traffic joins the two sides again."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.identity import MemoryIdentityGraph, ResolveRequest
from streams.identity.model import Identifier, parse
from streams.identity.split import SplitError, plan_split
from tests.unit.identity.test_properties import CONFLICT_FREE_RULES, conflict_free_traffic, to_requests


def _profiles(g: MemoryIdentityGraph, idents: set[Identifier]) -> dict[str | None, set[Identifier]]:
    out: dict[str | None, set[Identifier]] = {}
    for i in idents:
        out.setdefault(g.lookup(i), set()).add(i)
    return out


@settings(max_examples=300, deadline=None)
@given(events=conflict_free_traffic(), pick=st.integers(0, 10_000), detach=st.booleans(), step=st.integers(0, 50))
def test_a_split_leaves_exactly_two_profiles_that_never_join_again(events: list[tuple[Identifier, ...]], pick: int,
                                                                  detach: bool, step: int) -> None:
    g = MemoryIdentityGraph(CONFLICT_FREE_RULES)
    g.resolve_batch(to_requests(events))
    idents = {i for ev in events for i in ev}
    before = _profiles(g, idents)
    target = sorted(idents)[pick % len(idents)]
    S = g.lookup(target)
    members = sorted(before[S])
    try:
        if detach:
            res = g.split(9, detach=target)
        else:
            other = members[step % len(members)]
            chain = g.why(target, other)
            if not chain:
                return
            link = chain[step % len(chain)]
            res = g.split(9, cut=(parse(link["from"]), parse(link["to"])))
    except SplitError as exc:
        assert len(members) == 1 and "nothing would stay" in str(exc)
        return
    after = _profiles(g, idents)
    assert len(after) == len(before) + 1
    moved = {parse(f) for f in res.moved}
    assert after[res.new_profile_id] == moved and after[S] == set(members) - moved
    assert res.kept == len(members) - len(moved)
    for side in (after[S], moved):  # the provenance of each side still explains every pair in it
        first = min(side)
        assert all(g.why(first, i) is not None for i in side)
    # everything again, as new events in any order: the two sides stay apart, nothing else moves
    again = [ResolveRequest(f"r{k}", f"again/0/{k}", ev, 2_000 + k) for k, ev in enumerate(reversed(events))]
    g.resolve_batch(again)
    assert _profiles(g, idents) == after


def test_plan_split_refuses_what_it_cannot_do() -> None:
    links = {"a:1": "\x1fm\x1ffirst_seen\x1f1", "b:2": "a:1\x1fm\x1fco_occurrence\x1f1"}
    assert plan_split(links, [], cut=("a:1", "b:2")).moved == ("b:2",)
    for how in ({"cut": ("a:1", "c:3")}, {"cut": ("b:2", "b:2")}, {"detach": "c:3"}):
        try:
            plan_split(links, [], **how)  # type: ignore[arg-type]
        except SplitError:
            continue
        raise AssertionError(how)
