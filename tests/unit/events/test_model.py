import pytest

from streams.events.model import parse_identifier
from streams.events.schema import CALL_TYPES, load_schema


def test_parse_identifier_errors_say_what_is_wrong():
    assert parse_identifier(" email:a@b.co ") == ("email", "a@b.co")
    with pytest.raises(ValueError, match="expected TYPE:VALUE"):
        parse_identifier("42")
    with pytest.raises(ValueError, match="unknown identifier type 'passport'"):
        parse_identifier("passport:X1")


def test_schema_defines_every_call_type():
    definitions = load_schema()["definitions"]
    assert all(t in definitions for t in CALL_TYPES)


def test_to_dict_writes_only_set_fields_in_a_fixed_order():
    from streams.events.model import Touchpoint

    tp = Touchpoint("m", "track", 1, 2, (("user_id", "u"), ("email", "h")), event="E", revenue=0.0, source="t/0/1",
                    products=[{"sku": "s"}], consent={})
    assert list(tp.to_dict()) == ["message_id", "type", "ts_ms", "received_at_ms", "identifiers", "event", "revenue",
                                  "consent", "source", "products"]
    assert tp.to_dict()["identifiers"] == ["user_id:u", "email:h"]
    assert Touchpoint.from_bytes(tp.to_bytes()) == tp
