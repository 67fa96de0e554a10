"""The customer page's data: email and phone identifiers masked, traits and audiences as published."""

import orjson

from streams.activation.customers import customer_view, mask_identifier
from streams.activation.stage import ActivationStage
from streams.profiles.profile import decode
from streams.profiles.stage import ProfileStage
from tests.unit.activation.test_population import DEFS, NOW

HASH = "k1:0123456789abcdef0123456789abcdef"


def test_email_and_phone_are_never_shown_not_even_the_whole_hash():
    assert mask_identifier("email", HASH) == "hidden (email #012345)"
    assert HASH not in mask_identifier("phone", HASH) and mask_identifier("user_id", "u1") == "u1"


def test_customer_view_of_a_member():
    stage = ActivationStage(ProfileStage(), DEFS, lambda: NOW)
    value = None
    for i in range(3):
        e = {"message_id": f"m{i}", "type": "track", "ts_ms": NOW - i * 86_400_000, "identifiers": ["user_id:u1", f"email:{HASH}"],
             "channel": "pos", "event": "Order Completed", "order_id": f"o{i}", "revenue": 150.0, "currency": "CNY",
             "category": "masks", "region": "hubei", "consent": {"marketing": True, "analytics": True},
             "products": [{"category": "masks", "quantity": 2}], "source": f"t/0/{i}"}
        d = stage.decide("p1", value, orjson.dumps(e), i)
        value, _ = stage.settle("p1", value, d.value)
    view = customer_view("p1", decode(value), DEFS, NOW)
    assert {a["name"] for a in view["audiences"]} == {"repeat_mask_buyers_hubei", "big_spenders"}
    assert {t["name"]: t["value"] for t in view["computed_traits"]}["revenue_30d"] == 450.0
    email = next(i for i in view["identifiers"] if i["type"] == "email")
    assert email["masked"] and HASH not in orjson.dumps(view).decode()
    assert view["orders"]["count"] == 3 and view["consent"] == {"analytics": True, "marketing": True}
