"""Destinations: config validation, signatures, retries with backoff, permanent failures."""

import asyncio

import pytest

from streams.activation.definitions import DefinitionsError, parse
from streams.activation.destinations import Deliverer, Delivery, DestinationDef, idempotency_key_for, request_body, sign, verify

BASE = '[audiences.a]\nwhen = "event_count > 0"\npurpose = "none"\n'


def test_destinations_parse_and_every_mistake_is_one_line():
    d = parse(BASE + '[destinations.crm]\nkind = "webhook"\nurl = "http://127.0.0.1:9/h"\naudiences = ["a"]\nmax_attempts = 3\n'
                     '[destinations.wh]\nkind = "kafka"\ntopic = "crm-inbox"\nstreams = ["audiences"]\n').destinations
    assert [x.name for x in d] == ["crm", "wh"] and d[0].max_attempts == 3 and d[1].streams == ("audiences",)
    assert d[0].wants("audiences", {"audience": "a"}) and not d[0].wants("audiences", {"audience": "b"})
    assert not d[1].wants("profile-updates", {})
    for body, says in [('kind = "webhook"\nurl = "ftp://x"', ".url"), ('kind = "smtp"', ".kind"),
                       ('kind = "kafka"\ntopic = "audiences"', ".topic"), ('kind = "webhook"\nurl = "http://x"\naudiences = ["zz"]', ".audiences"),
                       ('kind = "webhook"\nurl = "http://x"\nmax_attempts = 0', ".max_attempts"), ('kind = "webhook"\nurl = "http://x"\nstreams = ["x"]', ".streams")]:
        with pytest.raises(DefinitionsError) as err:
            parse(BASE + "[destinations.x]\n" + body, "f.toml")
        assert says in str(err.value) and "\n" not in str(err.value)


def test_signature_round_trip_and_tamper():
    body = request_body(Delivery("audiences", "p1", {"x": 1}, "k" * 32, "t/0/1"))
    sig = sign("s3cret", 1700000000, body)
    assert verify("s3cret", "1700000000", body, sig)
    assert not verify("s3cret", "1700000001", body, sig)
    assert not verify("other", "1700000000", body, sig)
    assert not verify("s3cret", "1700000000", body + b" ", sig)


def test_idempotency_keys_are_the_record_key_or_the_position():
    assert idempotency_key_for("audiences", {"idempotency_key": "abc"}, "t/0/1") == "abc"
    a = idempotency_key_for("profile-updates", {"type": "profile"}, "t/0/1")
    assert a == idempotency_key_for("profile-updates", None, "t/0/1") != idempotency_key_for("profile-updates", None, "t/0/2")


def run_deliverer(results, **kw):
    calls, sleeps = [], []

    async def send(d):
        calls.append(d)
        return results[len(calls) - 1]

    async def sleep(s):
        sleeps.append(s)

    dest = DestinationDef("x", "webhook", url="http://h", **kw)
    outcome = asyncio.run(Deliverer(dest, send, sleep).deliver(Delivery("audiences", "p", None, "k", "s")))
    return outcome, len(calls), sleeps


def test_retries_back_off_then_deliver():
    outcome, calls, sleeps = run_deliverer([(False, True, "http_503"), (False, True, "unreachable"), (True, False, "")],
                                           max_attempts=5, backoff_s=0.5, max_backoff_s=0.8)
    assert outcome.delivered and outcome.attempts == 3 and calls == 3 and sleeps == [0.5, 0.8]


def test_gives_up_after_max_attempts_and_permanent_errors_at_once():
    outcome, calls, _ = run_deliverer([(False, True, "http_503")] * 4, max_attempts=4, backoff_s=0.0)
    assert not outcome.delivered and outcome.attempts == 4 and outcome.reason == "http_503" and calls == 4
    outcome, calls, _ = run_deliverer([(False, False, "http_400")], max_attempts=4)
    assert not outcome.delivered and calls == 1 and outcome.reason == "http_400"


CONSENT = ('[audiences.promo]\nwhen = "event_count > 0"\npurpose = "marketing"\n'
           '[audiences.stats]\nwhen = "event_count > 0"\npurpose = "analytics"\n'
           '[audiences.suppressed]\nwhen = "event_count > 0"\npurpose = "none"\n')


def update(consent):
    return {"schema": "touchpoint.profile-update.v1", "type": "profile", "profile_id": "p1", "ts_ms": 5,
            "profile": {"identifiers": [{"type": "user_id", "value": "u1"}], "consent": consent}}


def test_a_destination_gets_only_people_who_consented_to_its_purpose():
    dests = parse(CONSENT + '[destinations.ads]\nkind = "webhook"\nurl = "http://127.0.0.1:9/h"\npurpose = "marketing"\n'
                            '[destinations.legacy]\nkind = "kafka"\ntopic = "all"\n').destinations
    ads, legacy = dests
    assert ads.purpose == "marketing" and legacy.purpose == "none"
    # audience changes: only the audiences of its purpose (whose members consented to it)
    assert ads.wants("audiences", {"audience": "promo", "purpose": "marketing"})
    assert not ads.wants("audiences", {"audience": "stats", "purpose": "analytics"})
    assert not ads.wants("audiences", {"audience": "suppressed", "purpose": "none"})
    assert legacy.wants("audiences", {"audience": "stats", "purpose": "analytics"})
    # profile updates: the profile when it consented, else a notice to drop it
    assert ads.visible("profile-updates", update({"marketing": True})) == update({"marketing": True})
    for consent in ({}, {"marketing": False}, {"analytics": True}, {"marketing": "yes"}):
        shown = ads.visible("profile-updates", update(consent))
        assert shown == {"schema": "touchpoint.profile-update.v1", "type": "withheld", "profile_id": "p1", "purpose": "marketing", "ts_ms": 5}
    assert ads.visible("profile-updates", None) is None  # an erasure's tombstone still goes out
    redirect = {"type": "redirect", "profile_id": "p2", "redirect_to": "p1"}
    assert ads.visible("profile-updates", redirect) == redirect
    assert legacy.visible("profile-updates", update({})) == update({})


def test_a_destination_purpose_is_checked_against_its_audiences():
    with pytest.raises(DefinitionsError, match=r"destinations.ads.audiences: stats serve\(s\) another purpose than 'marketing'"):
        parse(CONSENT + '[destinations.ads]\nkind = "webhook"\nurl = "http://x"\npurpose = "marketing"\naudiences = ["promo", "stats"]\n')
    with pytest.raises(DefinitionsError, match=r"\.purpose"):
        parse(CONSENT + '[destinations.ads]\nkind = "webhook"\nurl = "http://x"\npurpose = ""\n')
