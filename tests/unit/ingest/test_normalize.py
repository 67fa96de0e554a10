from streams.events.model import Touchpoint
from streams.events.reasons import Reason, Rejected
from streams.ingest.normalize import Normalizer, event_time_ms
from streams.ingest.pii import PiiHasher, normalize_email, normalize_phone

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
hasher = PiiHasher("test-key")
norm = Normalizer(hasher, "CN", 86_400_000)


def test_identifiers_from_every_documented_place():
    event = {
        "type": "identify", "messageId": "m1", "userId": 42, "anonymousId": "a-1",
        "traits": {"email": "  Ann@Example.COM ", "phone": "138 1234 5678", "name": "Ann"},
        "context": {"device": {"id": "d-1"}, "externalIds": [{"id": "o123", "type": "wechat_openid"}, {"id": "M7", "type": "member_id"}]},
    }
    tp = norm.normalize(event, NOW)
    assert isinstance(tp, Touchpoint)
    assert tp.identifiers == (
        ("user_id", "42"), ("anonymous_id", "a-1"), ("device_id", "d-1"),
        ("email", hasher.hash("email", "ann@example.com")),
        ("phone", hasher.hash("phone", "+8613812345678")),
        ("wechat_openid", "o123"), ("member_id", "M7"),
    )
    # PII never travels in traits; other traits do.
    assert tp.traits == {"name": "Ann"}
    assert b"example.com" not in tp.to_bytes() and b"1381234" not in tp.to_bytes()


def test_same_person_same_hash_whatever_the_spelling():
    a = norm.normalize({"type": "identify", "messageId": "1", "traits": {"email": "X@Y.com", "phone": "+86 138-1234-5678"}}, NOW)
    b = norm.normalize({"type": "identify", "messageId": "2", "context": {"traits": {"email": " x@y.COM", "phone": "13812345678"}}}, NOW)
    assert a.identifiers == b.identifiers


def test_keyed_hash_depends_on_the_key():
    assert PiiHasher("k1").hash("email", "a@b.co") != PiiHasher("k2").hash("email", "a@b.co")


def test_unusable_email_or_phone_is_refused_hashed_never_raw():
    tp = norm.normalize({"type": "identify", "messageId": "1", "traits": {"email": "nope", "phone": "12"}}, NOW)
    # carried (hashed, marked refused) so the graph audits and counts them; never linked
    assert tp.identifiers == (("email", "!invalid_email:" + hasher.hash("email", "nope")),
                              ("phone", "!invalid_phone:" + hasher.hash("phone", "12")))
    assert all(norm.rules.is_blocked(i) for i in tp.identifiers)


def test_no_identifier_is_rejected():
    tp = norm.normalize({"type": "track", "messageId": "1", "event": "x"}, NOW)
    assert isinstance(tp, Rejected) and tp.reason is Reason.NO_IDENTIFIER


def test_skew_correction_uses_our_receive_time():
    event = {"timestamp": "2020-01-01T00:00:00Z", "sentAt": "2020-01-01T00:00:30Z"}
    assert event_time_ms(event, NOW, 86_400_000) == NOW - 30_000
    # without sentAt the client's timestamp stands; without any, our receive time
    assert event_time_ms({"timestamp": "2026-01-01T00:00:01Z"}, NOW, 86_400_000) == NOW + 1000
    assert event_time_ms({}, NOW, 86_400_000) == NOW
    # a negative or absurd gap is not a skew we can correct
    assert event_time_ms({"timestamp": "2026-01-01T00:00:05Z", "sentAt": "2026-01-01T00:00:00Z"}, NOW, 86_400_000) == NOW + 5000


def test_commerce_fields_and_channel():
    event = {
        "type": "track", "messageId": "m", "event": "Order Completed", "userId": "u", "context": {"channel": "miniprogram", "store": {"id": 9, "region": "hubei"}},
        "properties": {"order_id": 77, "revenue": 12, "currency": "cny", "products": [{"product_id": 5, "category": "masks", "price": 3.5, "quantity": 2, "name": "N95"}]},
    }
    tp = norm.normalize(event, NOW)
    assert (tp.channel, tp.region, tp.store, tp.order_id, tp.revenue, tp.currency) == ("miniprogram", "hubei", "9", "77", 12.0, "CNY")
    assert tp.products == [{"product_id": "5", "category": "masks", "price": 3.5, "quantity": 2}]
    assert ("order_id", "77") in tp.identifiers
    assert Touchpoint.from_bytes(tp.to_bytes()).to_dict() == tp.to_dict()


def test_alias_links_previous_id():
    tp = norm.normalize({"type": "alias", "messageId": "m", "previousId": "anon-9", "userId": "u-9"}, NOW)
    assert tp.identifiers == (("user_id", "u-9"), ("anonymous_id", "anon-9"))


def test_email_and_phone_normalisation():
    assert normalize_email(" A.B@C.D ") == "a.b@c.d"
    assert normalize_email("a@b") is None
    assert normalize_phone("(415) 555-2671", "US") == "+14155552671"
    assert normalize_phone("hello", "CN") is None


def test_hashed_pii_memo_is_bounded_and_changes_nothing(monkeypatch):
    import streams.ingest.normalize as normalize_module

    monkeypatch.setattr(normalize_module, "_PII_MEMO_MAX", 2)
    memo_norm = Normalizer(hasher, "CN", 86_400_000)
    events = [{"type": "identify", "messageId": str(i), "traits": {"email": f"P{i % 3}@x.co", "phone": 13812345670 + i % 2}} for i in range(8)]
    events.append({"type": "identify", "messageId": "s", "traits": {"phone": "13812345671", "email": "bad"}})
    for event in events:
        tp = memo_norm.normalize(event, NOW)
        phone = normalize_phone(event["traits"]["phone"], "CN")
        email = normalize_email(event["traits"]["email"])
        mail = ("email", hasher.hash("email", email)) if email else ("email", "!invalid_email:" + hasher.hash("email", "bad"))
        expected = (mail, ("phone", hasher.hash("phone", phone)))
        assert tp.identifiers == expected
        assert len(memo_norm._pii_memo) <= 2
