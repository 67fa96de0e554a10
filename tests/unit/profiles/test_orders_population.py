"""Cross-source orders of the hand-made trap population (tests/unit/identity/trap_population.py)
through ingest, the identity twin and the profile fold: every customer's profile counts each of
their orders once, although the CRM reports every e-commerce order again and the e-commerce
system every POS order (the fold before issue 17 counted each order twice)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from streams.identity.identifiers import stored_identifier
from streams.profiles.profile import fold, new_profile, render
from tests.unit.identity.test_trap_population import HASHER, run
from tests.unit.identity.trap_population import trap_traffic


@pytest.mark.parametrize(("seed", "batch"), [(17, 500), (23, 7)])
def test_each_customer_has_each_order_once(seed: int, batch: int) -> None:
    traffic = trap_traffic(seed)
    sink, graph, _ = run(traffic.events, batch)
    folded: dict[str, dict] = defaultdict(new_profile)
    for e in sink.events:
        if "control" not in e:
            fold(folded[graph.current_profile(e["profile_id"])], e)
    checked = 0
    for c in traffic.customers:
        orders = sorted(t.split(":", 1)[1] for t in c.identifiers if t.startswith("order_id:"))
        if not orders:
            continue
        owner = graph.lookup(stored_identifier(f"user_id:{c.user_id}", HASHER)) if not c.userid_is_email else None
        owner = owner or graph.lookup(stored_identifier(f"crm_id:{c.crm_id}", HASHER))
        out = render(owner, folded[owner])["orders"]
        revenue = sum(10.0 if o.startswith("EC-") else 5.0 for o in orders)
        assert (out["count"], out["revenue"]) == (len(orders), {"CNY": revenue}), (c.n, orders, out)
        checked += 1
    assert checked >= 20
