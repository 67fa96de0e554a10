import orjson
import pytest

from streams.events.reasons import Reason, Rejected
from streams.ingest.decode import decode

LIMIT = 32 * 1024


def ok(**extra):
    base = {"type": "track", "messageId": "m-1", "event": "Product Viewed", "userId": "u1"}
    base.update(extra)
    return orjson.dumps(base)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (None, Reason.NOT_JSON),
        (b"", Reason.NOT_JSON),
        (b"{oops", Reason.NOT_JSON),
        (b"\xff\xfe", Reason.NOT_JSON),
        (b"[1, 2]", Reason.SCHEMA_VIOLATION),
        (b'{"type": "track", "event": "x", "userId": "u"}', Reason.MISSING_MESSAGE_ID),
        (b'{"type": "track", "messageId": "", "event": "x"}', Reason.MISSING_MESSAGE_ID),
        (b'{"type": "shout", "messageId": "m"}', Reason.UNKNOWN_TYPE),
        (b'{"messageId": "m"}', Reason.UNKNOWN_TYPE),
        (b'{"type": "track", "messageId": "m"}', Reason.SCHEMA_VIOLATION),  # track needs event
        (ok(messageId="x" * 101), Reason.SCHEMA_VIOLATION),
        (ok(channel="fax"), Reason.SCHEMA_VIOLATION),
        (ok(timestamp="yesterday"), Reason.SCHEMA_VIOLATION),
        (ok(properties={"products": [{"price": -1}]}), Reason.SCHEMA_VIOLATION),
        (ok(context={"externalIds": [{"id": "x", "type": "passport"}]}), Reason.SCHEMA_VIOLATION),
        (b'{"type": "alias", "messageId": "m", "userId": "u"}', Reason.SCHEMA_VIOLATION),  # needs previousId
    ],
)
def test_rejects_with_the_documented_reason(raw, reason):
    result = decode(raw, LIMIT)
    assert isinstance(result, Rejected), result
    assert result.reason is reason
    assert result.message


def test_size_guard_runs_before_decoding():
    raw = ok(properties={"blob": "x" * LIMIT})
    result = decode(raw, LIMIT)
    assert isinstance(result, Rejected) and result.reason is Reason.TOO_LARGE
    assert str(len(raw)) in result.message


def test_schema_message_does_not_echo_values():
    result = decode(ok(context={"traits": {"email": 12345678}}), LIMIT)
    assert isinstance(result, Rejected) and result.reason is Reason.SCHEMA_VIOLATION
    assert "12345678" not in result.message


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group", "alias"])
def test_every_call_type_is_accepted(kind):
    event = {"type": kind, "messageId": f"m-{kind}", "userId": "u1", "event": "E", "groupId": "g", "previousId": "a1"}
    assert isinstance(decode(orjson.dumps(event), LIMIT), dict)


def test_deep_nesting_is_not_json_not_a_crash():
    raw = b'{"type":"track","messageId":"m","event":"e","properties":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    result = decode(raw, 10**6)
    assert isinstance(result, Rejected)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"context": {"externalIds": [{"id": "a", "type": "user_id"}, {"id": "", "type": "user_id"}]}},
         "data.context.externalIds[1].id must be longer than or equal to 1 characters"),
        ({"properties": {"products": [{"sku": "s"}, {"product_id": "a\x01b"}]}},
         "data.properties.products[1].product_id must match pattern ^[^\\u0000-\\u001f]+$"),
        ({"context": {"store": {"id": 7, "region": "x" * 101}}}, "data.context.store.region must be shorter than or equal to 100 characters"),
        # the first broken rule is reported: the common fields before the call type's own
        ({"channel": "fax", "properties": {"currency": "EURO"}},
         "data.channel must be one of ['web', 'app', 'miniprogram', 'ecommerce', 'pos', 'crm', 'service']"),
        ({"properties": {"currency": "EURO"}, "event": ""}, "data.event must be longer than or equal to 1 characters"),
    ],
)
def test_schema_message_names_the_path_and_the_rule(extra, message):
    # The validators are compiled with the schema's $refs inlined (streams/events/schema.py):
    # the messages must stay the ones the $ref-based validators gave.
    result = decode(ok(**extra), LIMIT)
    assert isinstance(result, Rejected) and result.reason is Reason.SCHEMA_VIOLATION
    assert result.message == message
