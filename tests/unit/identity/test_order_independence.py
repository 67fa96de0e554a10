"""Order independence with order ids, limits and quarantine in play (issue 17 item 5, invariant 3).

Traffic: people with at most one identifier of each person-level type, orders reported by up to
three sources (each with another subset of the person's identifiers plus the order id),
placeholders sprinkled in, and store phones typed at the till with the customer's POS card; a
store phone used by two or more people is a supernode. Rules: every person-level limit is 1 (so
limits are reached, never exceeded by one person), order ids up to the most a person has, the
link breaker at 0 and the merge breaker off.

Whatever the permutation and the batching, the graph must end with exactly the oracle's
components: union-find over the events without placeholders and without the shared store phones;
the shared store phones, and only they, end up quarantined.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from streams.identity import IdentityRules, MemoryIdentityGraph, ResolveRequest
from streams.identity.model import Identifier
from touchpoint_tools.oracle import components, partition_of

PERSON_TYPES = ("user_id", "email", "device_id", "anonymous_id", "pos_card_id")
MAX_ORDERS = 2
MAX_PEOPLE = 6
# The order-id limit is in play: two people's orders together pass it (MAX_ORDERS each at most,
# so one person's never do), so a merge through a shared store phone may be refused by the
# order-id limit before any card conflict; the phone must be quarantined all the same
# (test_order_id_limit_refusals_happen_in_this_traffic proves such refusals are drawn).
RULES = IdentityRules(limits={t: 1 for t in (*PERSON_TYPES, "phone")} | {"order_id": MAX_ORDERS}, default_limit=1,
                      supernode_max_merges=None, supernode_max_links=0, supernode_links_by_type={})
PLACEHOLDERS: tuple[Identifier, ...] = (("device_id", "null"), ("anonymous_id", "0"), ("user_id", "undefined"),
                                        ("email", "!blocked_value:0123456789abcdef0123456789abcdef"))


Traffic = tuple[list[tuple[Identifier, ...]], set[Identifier]]


@st.composite
def traffic(draw: st.DrawFn, max_people: int = MAX_PEOPLE, max_events: int = 40) -> Traffic:
    """(events, store phones that must end quarantined)."""
    n_people = draw(st.integers(1, max_people))
    stores = [("phone", f"store{k}") for k in range(draw(st.integers(0, 2)))]
    people: list[list[Identifier]] = []
    orders: list[list[Identifier]] = []
    store_of: list[Identifier | None] = []
    for p in range(n_people):
        ids = [(t, f"{t[:3]}{p}") for t in PERSON_TYPES if draw(st.booleans())] or [("anonymous_id", f"ano{p}")]
        people.append(ids)
        has_card = any(t == "pos_card_id" for t, _ in ids)
        store_of.append(draw(st.sampled_from(stores)) if stores and has_card and draw(st.booleans()) else None)
        # customers of a store buy the most a person does: two of them together pass the order-id limit
        least = MAX_ORDERS if store_of[-1] is not None else 0
        orders.append([("order_id", f"o{p}-{k}") for k in range(draw(st.integers(least, MAX_ORDERS)))])
    events: list[tuple[Identifier, ...]] = []
    users: dict[Identifier, set[int]] = {}
    for _ in range(draw(st.integers(1, max_events))):
        p = draw(st.integers(0, n_people - 1))
        kind = draw(st.sampled_from(["plain", "order", "till"]))
        if kind == "till" and store_of[p] is not None:
            card = next(i for i in people[p] if i[0] == "pos_card_id")
            ev = [card, store_of[p]]
            users.setdefault(store_of[p], set()).add(p)
        else:
            ev = list(draw(st.lists(st.sampled_from(people[p]), min_size=1, max_size=3, unique=True)))
            if kind == "order" and orders[p]:
                ev.append(draw(st.sampled_from(orders[p])))
        if draw(st.integers(0, 4)) == 0:
            ev.insert(draw(st.integers(0, len(ev))), draw(st.sampled_from(PLACEHOLDERS)))
        events.append(tuple(ev))
    return events, {s for s, who in users.items() if len(who) > 1}


def expected_components(events: Sequence[tuple[Identifier, ...]], shared: set[Identifier]) -> set[frozenset[Identifier]]:
    return components([tuple(i for i in ev if i not in shared and not RULES.is_blocked(i)) for ev in events])


def requests(events: Sequence[tuple[Identifier, ...]], order: Sequence[int]) -> list[ResolveRequest]:
    return [ResolveRequest(f"m{i}", f"t/0/{i}", events[i], 1_700_000_000_000 + i) for i in order]


def batches(reqs: list[ResolveRequest], cuts: Sequence[int]) -> list[list[ResolveRequest]]:
    bounds = sorted({0, len(reqs), *(c for c in cuts if 0 < c < len(reqs))})
    return [reqs[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def check(events: Sequence[tuple[Identifier, ...]], shared: set[Identifier], lookup: Callable[[Identifier], str | None],
          quarantined: Callable[[Identifier], bool]) -> None:
    idents = {i for ev in events for i in ev if not RULES.is_blocked(i)}
    owners = {i: lookup(i) for i in idents if i not in shared}
    assert None not in owners.values()
    assert partition_of(owners) == expected_components(events, shared)
    assert {i for i in idents if quarantined(i)} == shared
    for i in idents - shared:
        assert lookup(i) is not None


def run_memory(events: Sequence[tuple[Identifier, ...]], order: Sequence[int], cuts: Sequence[int]) -> MemoryIdentityGraph:
    g = MemoryIdentityGraph(RULES)
    for b in batches(requests(events, order), cuts):
        g.resolve_batch(b)
    return g


@settings(max_examples=200, deadline=None)
@given(t=traffic(), seed=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_permutation_and_partitioning_gives_the_oracle_components(t: Traffic, seed: random.Random, cuts: list[int]) -> None:
    events, shared = t
    order = list(range(len(events)))
    seed.shuffle(order)
    for o, c in ((range(len(events)), []), (order, cuts)):
        g = run_memory(events, list(o), c)
        check(events, shared, g.lookup, lambda i, g=g: f"{i[0]}:{i[1]}" in g._quar)


def test_a_store_phone_shared_by_two_customers_is_quarantined_whatever_came_first() -> None:
    events = [(("pos_card_id", "c1"), ("phone", "s")), (("user_id", "u1"), ("pos_card_id", "c1"), ("order_id", "o1")),
              (("pos_card_id", "c2"), ("phone", "s")), (("email", "e2"), ("order_id", "o2")), (("pos_card_id", "c2"), ("order_id", "o2"))]
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [3, 4, 1, 2, 0]):
        g = run_memory(events, order, [2])
        check(events, {("phone", "s")}, g.lookup, lambda i, g=g: f"{i[0]}:{i[1]}" in g._quar)


def test_an_order_id_limit_refusal_does_not_hide_a_shared_store_phone() -> None:
    # Two customers typed the same store phone at the till; customer 1 already has the most order
    # ids a profile may hold, so the merge the phone asks for is refused by the order-id limit
    # first. The refused profile still brings in a POS card: the phone is blamed, as it is when
    # the same events come in any other order (the old graphs left it linked in this order).
    events = [(("pos_card_id", "pos1"), ("order_id", "o1-1")), (("pos_card_id", "pos2"), ("order_id", "o2-0")),
              (("pos_card_id", "pos1"), ("order_id", "o1-0")),
              (("pos_card_id", "pos1"), ("phone", "store0")), (("pos_card_id", "pos2"), ("phone", "store0"))]
    g = _Counting(RULES)
    g.resolve_batch(requests(events, range(len(events))))
    assert g.planned_refusals["limit:order_id"] == 1  # planned, then planned again without the phone
    assert "phone:store0" in g._quar
    for order in itertools.permutations(range(len(events))):
        g = run_memory(events, order, [])
        check(events, {("phone", "store0")}, g.lookup, lambda i, g=g: f"{i[0]}:{i[1]}" in g._quar)


class _Counting(MemoryIdentityGraph):
    """The memory graph counting the refusals of every planning pass (the final records keep only
    the last pass: a refusal that quarantines a shared phone is planned again without it)."""

    def __init__(self, rules: IdentityRules) -> None:
        super().__init__(rules)
        self.planned_refusals: Counter[str] = Counter()

    def _plan(self, live: Any) -> Any:
        out = super()._plan(live)
        self.planned_refusals.update(a["rule"] for a in out[4])
        return out


def _order_limit_refusals(t: Traffic) -> int:
    events, _ = t
    g = _Counting(RULES)
    g.resolve_batch(requests(events, range(len(events))))
    return g.planned_refusals["limit:order_id"]


def test_order_id_limit_refusals_happen_in_this_traffic() -> None:
    # The property above is not vacuous: the traffic it draws reaches the order-id limit (about
    # one example in 150 plans such a refusal; 3,000 draws miss it with probability ~e^-20).
    # find() searches deterministically (the CI profile derandomizes every draw: 3,000 calls of
    # .example() there gave the same example 3,000 times); NoSuchExample fails the test. No shrink
    # phase: any example will do, and shrinking the found one took ~200 s.
    found = find(traffic(), lambda events: _order_limit_refusals(events) > 0,
                 settings=settings(max_examples=3000, database=None, derandomize=True, phases=[Phase.generate]))
    assert _order_limit_refusals(found) > 0
