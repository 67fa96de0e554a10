import pytest

from streams.events.reasons import Reason, Rejected
from streams.ingest.dlq import DlqCodec


def test_sealed_payload_round_trips_and_hides_pii():
    codec = DlqCodec("secret")
    raw = b'{"traits":{"email":"ann@example.com"}'
    letter = codec.dead_letter(raw, Rejected(Reason.NOT_JSON, "bad"), "ns.touchpoints", 3, 17, 1000)
    assert b"ann@example.com" not in letter.value
    headers = dict(letter.headers)
    assert headers["tp.reason"] == b"not_json"
    assert (headers["tp.source.topic"], headers["tp.source.partition"], headers["tp.source.offset"]) == (b"ns.touchpoints", b"3", b"17")
    assert codec.open(letter.value, headers["tp.encoding"].decode()) == raw


def test_wrong_key_cannot_open():
    letter = DlqCodec("a").dead_letter(b"x", Rejected(Reason.NOT_JSON, "m"), "t", 0, 0, 0)
    with pytest.raises(Exception):
        DlqCodec("b").open(letter.value, "aesgcm-v1")


def test_plain_mode_keeps_bytes():
    codec = DlqCodec("a", encrypt=False)
    letter = codec.dead_letter(b"raw", Rejected(Reason.TOO_LARGE, "m"), "t", 0, 0, 0)
    assert letter.value == b"raw" and codec.open(letter.value, "none") == b"raw"
