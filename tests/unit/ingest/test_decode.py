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
