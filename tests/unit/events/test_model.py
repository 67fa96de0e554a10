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
