"""Split (issue 17 item 5) on both graphs: the in-memory twin and Redis (lua/split.lua) give the
same answers; the differential test in test_identity_graph.py mixes splits into random traffic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from streams.identity.split import SplitError
from tests.contracts.test_identity_graph import ID, R, kinds


def _merged_family(g: Any) -> None:
    # two people joined by a shared tablet: the tablet's merge is the wrong one
    g.resolve_batch([R("m1", "user_id:u1", "email:e1", "device_id:tablet"), R("m2", "email:e2", "phone:h2"),
                     R("m3", "email:e2", "anonymous_id:a2"), R("m4", "anonymous_id:a2", "device_id:tablet")])


def test_undoing_a_merge_gives_two_profiles_that_stay_apart(make: Callable[..., Any]) -> None:
    g = make()
    _merged_family(g)
    assert g.lookup(ID("user_id:u1")) == g.lookup(ID("anonymous_id:a2")) == "p1"
    # the merge record names its pair; why shows the same step
    chain = g.why(ID("device_id:tablet"), ID("anonymous_id:a2"))
    assert [(s["from"], s["to"], s["message_id"]) for s in chain] == [("device_id:tablet", "anonymous_id:a2", "m4")]
    res = g.split(1_700_000_100_000, cut=(ID("device_id:tablet"), ID("anonymous_id:a2")))
    assert (res.profile_id, res.new_profile_id, res.kept) == ("p1", "p3", 3)
    assert res.moved == ("anonymous_id:a2", "email:e2", "phone:h2")
    assert [f"{t}:{v}" for t, v in g.identifiers_of("p3")] == ["email:e2", "phone:h2", "anonymous_id:a2"]
    assert [f"{t}:{v}" for t, v in g.identifiers_of("p1")] == ["user_id:u1", "email:e1", "device_id:tablet"]
    assert g.why(ID("email:e2"), ID("phone:h2")) is not None and g.why(ID("email:e1"), ID("email:e2")) is None
    # replays of the same events (other claims) change nothing; the same events sent anew are refused
    again = g.resolve_batch([R(m, *ids, claim=f"again/0/{m}") for m, *ids in
                             (("m4", "anonymous_id:a2", "device_id:tablet"), ("m1", "user_id:u1", "email:e1", "device_id:tablet"))])
    assert [r.outcome for r in again] == ["duplicate", "duplicate"]
    fresh = g.resolve_batch([R("m5", "anonymous_id:a2", "device_id:tablet")])[0]
    assert (fresh.profile_id, kinds(fresh), fresh.refused) == ("p1", [("conflict", "split")], ("anonymous_id:a2",))
    assert g.lookup(ID("device_id:tablet")) == "p1" and g.lookup(ID("anonymous_id:a2")) == "p3"
    answer = g.explain(ID("user_id:u1"), ID("email:e2"))
    assert (answer["linked"], answer["rule"]) == (False, "split") and "split p3" in answer["detail"]


def test_the_refusal_survives_later_merges(make: Callable[..., Any]) -> None:
    g = make()
    _merged_family(g)
    g.split(1, cut=(ID("device_id:tablet"), ID("anonymous_id:a2")))
    # the moved side merges with a profile of its own; the kept side too; they still never join
    out = g.resolve_batch([R("m6", "crm_id:c9"), R("m7", "crm_id:c9", "email:e2"), R("m8", "member_id:x1", "email:e1"),
                           R("m9", "crm_id:c9", "member_id:x1")])
    assert g.lookup(ID("crm_id:c9")) == g.lookup(ID("phone:h2")) != g.lookup(ID("user_id:u1"))
    assert kinds(out[-1]) == [("conflict", "split")]


def test_detaching_an_identifier_keeps_the_rest_together(make: Callable[..., Any]) -> None:
    g = make()
    # a typo'd email was linked first; the member id and the phone came with it
    g.resolve_batch([R("m1", "email:wrong", "member_id:k1"), R("m2", "member_id:k1", "phone:h1"), R("m3", "email:wrong", "anonymous_id:z")])
    res = g.split(2, detach=ID("email:wrong"))
    assert (res.moved, res.kept) == (("email:wrong",), 3)
    assert g.lookup(ID("member_id:k1")) == g.lookup(ID("anonymous_id:z")) == g.lookup(ID("phone:h1")) == "p1"
    assert g.lookup(ID("email:wrong")) == res.new_profile_id
    # the pieces the email held together are rejoined by the split itself (rule "split", no event invented)
    chain = g.why(ID("anonymous_id:z"), ID("member_id:k1"))
    assert [(s["rule"], s["message_id"]) for s in chain] == [("split", res.new_profile_id)]
    back = g.resolve_batch([R("m4", "email:wrong", "member_id:k1")])[0]
    assert kinds(back) == [("conflict", "split")] and back.profile_id == "p1"


@pytest.mark.parametrize(("how", "why"), [
    ({"detach": ID("email:nobody")}, "email:nobody is not in a profile"),
    ({"cut": (ID("user_id:u1"), ID("email:e2"))}, "no recorded link between user_id:u1 and email:e2 (see touchpoint identity why)"),
    ({"cut": (ID("user_id:u1"), ID("user_id:u9"))}, "user_id:u1 and user_id:u9 are not two identifiers of one profile"),
    ({"detach": ID("user_id:u9")}, "nothing would stay: the profile holds only what would move"),
])
def test_refused_splits_change_nothing(make: Callable[..., Any], how: dict[str, Any], why: str) -> None:
    g = make()
    _merged_family(g)
    g.resolve_batch([R("m9", "user_id:u9")])
    before = {i: g.lookup(ID(i)) for i in ("user_id:u1", "email:e2", "user_id:u9")}
    with pytest.raises(SplitError) as exc:
        g.split(3, **how)
    assert str(exc.value) == why
    assert {i: g.lookup(ID(i)) for i in before} == before
    assert g.resolve_batch([R("m10", "crm_id:new")])[0].profile_id == "p4"  # p1..p3 exist; no profile id was used up


def test_identity_rebuild_replays_the_split(redis_url: str) -> None:
    """`touchpoint identity rebuild` from the audit trail gives the split graph, tags included."""
    import uuid

    from streams.identity import IdentityRules
    from streams.identity.rebuild import build_image, write_image
    from streams.identity.split_person import split_record
    from tests.contracts.test_identity_graph import RedisTwin

    live = RedisTwin(redis_url, IdentityRules())
    records: list[tuple[dict[str, Any], int]] = []
    try:
        for r in live.resolve_batch([R("m1", "user_id:u1", "email:e1", "device_id:tablet"), R("m2", "email:e2", "phone:h2"),
                                     R("m3", "email:e2", "anonymous_id:a2"), R("m4", "anonymous_id:a2", "device_id:tablet"),
                                     R("m5", "member_id:k1", "email:e1"), R("m6", "member_id:k1", "crm_id:c1")]):
            records += [(c, 0) for c in r.changes]
        cut = (ID("device_id:tablet"), ID("anonymous_id:a2"))
        res = live.split(7, cut=cut)
        records.append((split_record(res.profile_id, res.new_profile_id, res.moved, "ops", 7, cut, None), 0))
        det = live.split(8, detach=ID("email:e1"))
        records.append((split_record(det.profile_id, det.new_profile_id, det.moved, "ops", 8, None, ID("email:e1")), 0))
        img = build_image(records, [], IdentityRules(), 3600, now_ms=0)
        copy = RedisTwin(redis_url, IdentityRules(), namespace=f"t-{uuid.uuid4().hex[:10]}")
        try:
            copy.run(write_image(copy.client, copy.namespace, img))
            idents = [ID(f) for f in ("user_id:u1", "email:e1", "device_id:tablet", "email:e2", "phone:h2", "anonymous_id:a2",
                                      "member_id:k1", "crm_id:c1")]
            assert [copy.lookup(i) for i in idents] == [live.lookup(i) for i in idents]
            for pid in {live.lookup(i) for i in idents}:
                assert copy.identifiers_of(pid) == live.identifiers_of(pid)
            for a in idents:
                for b in idents:
                    assert copy.why(a, b) == live.why(a, b)
            # the refusal holds in the rebuilt graph too
            for g in (live, copy):
                again = g.resolve_batch([R("m9", "anonymous_id:a2", "device_id:tablet"), R("m10", "email:e1", "member_id:k1")])
                assert [kinds(r) for r in again] == [[("conflict", "split")], [("conflict", "split")]]
        finally:
            copy.close()
    finally:
        live.close()
