"""A hand-made, seeded population full of identity traps, with its exact oracle (issue 17).

Each customer has a hidden identity and shows it through several sources; the traffic mixes in:

- placeholders: phones ``00000000000`` / ``000-0000-0000`` / ``12345``, the bank hotline
  ``95588`` typed as a phone, ``test@test.com``, device id ``null``, anonymousId ``undefined``;
- a shared number: the store's phone ``138 0000 0000`` typed at the till with every customer's
  new POS card (a supernode: it must not gather the cards), and a family tablet shared by two
  customers who each log in (uniqueness keeps them apart);
- cross-source orders: an e-commerce order (userId) reported again by the CRM (crm_id and
  email), and a POS order (card) reported again by the e-commerce system (userId);
- PII where it is not expected: a userId that is an email, traits ``Email`` / ``mobile`` /
  ``contact.email``, emails with a zero-width space or full-width letters;
- WeChat: openids per mini-program (``collection`` = app id), two customers with the same raw
  openid in different apps, a unionid joining one customer's apps.

The oracle is the hidden truth: every customer is exactly one profile holding exactly their own
identifiers (as stored: normalised, PII hashed); placeholders are nowhere; the shared values
are in no customer's component (they sit with whoever came first, so they are left out of the
comparison); events whose identifiers are all refused are dead-lettered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.identity.identifiers import stored_identifier
from streams.identity.model import Identifier
from streams.ingest.pii import PiiHasher

__all__ = ["Customer", "TrapTraffic", "trap_traffic", "STORE_PHONE", "FAMILY_DEVICE", "PLACEHOLDERS"]

STORE_PHONE = "138 0000 0000"
FAMILY_DEVICE = "family-tablet-1"
PLACEHOLDERS = ("phone:00000000000", "phone:000-0000-0000", "phone:12345", "phone:95588", "email:test@test.com",
                "device_id:null", "anonymous_id:undefined")
APPS = ("wx-shop", "wx-club")
START_MS = 1_767_225_600_000


@dataclass
class Customer:
    n: int
    user_id: str
    email: str
    phone: str
    crm_id: str
    pos_card: str | None
    device: str
    anon: str
    openids: dict[str, str]
    unionid: str
    userid_is_email: bool = False
    events: int = 0
    identifiers: set[str] = field(default_factory=set)  # TYPE:VALUE as typed, canonical

    def add(self, text: str) -> None:
        self.identifiers.add(text)


@dataclass
class TrapTraffic:
    events: list[dict[str, Any]]
    customers: list[Customer]
    dead: int                  # events whose every identifier is refused
    shared: list[str]          # TYPE:VALUE of shared values (left out of the comparison)

    def expected(self, hasher: PiiHasher) -> list[set[Identifier]]:
        """Per customer (who sent anything), their identifiers as stored."""
        return [{stored_identifier(t, hasher) for t in c.identifiers} for c in self.customers if c.identifiers]


def _email_variant(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    return rng.choice([email, email.upper(), f" {email} ", f"{local}\u200b@{domain}",
                       "".join(chr(ord(ch) + 0xFEE0) if ch.isalpha() else ch for ch in local) + "@" + domain])


def _phone_variant(rng: random.Random, phone: str) -> str:
    return rng.choice([phone, f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}", f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"])


def trap_traffic(seed: int = 17, customers: int = 24) -> TrapTraffic:
    rng = random.Random(seed)
    people = []
    for i in range(customers):
        tag = f"{seed}k{i}"
        people.append(Customer(
            n=i, user_id=f"u{tag}", email=f"Cust.{tag}@Example.com", phone=f"139{seed % 100:02d}{i:06d}",
            crm_id=f"CRM-{tag}", pos_card=f"POS-{tag}" if i % 3 != 2 else None, device=f"dev-{tag}", anon=f"anon-{tag}",
            openids={app: f"o{rng.getrandbits(40):010x}" for app in APPS}, unionid=f"un-{tag}", userid_is_email=i % 5 == 4))
    # two customers with the same raw openid in different mini-programs
    people[1].openids[APPS[1]] = people[0].openids[APPS[0]]
    events: list[dict[str, Any]] = []
    dead = 0
    seq = 0
    order_seq = 0

    def emit(ev: dict[str, Any], who: Customer | None) -> None:
        nonlocal seq
        seq += 1
        ts = START_MS + seq * 1000
        ev["messageId"] = f"trap-{seed}-{seq}"
        ev["timestamp"] = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        events.append(ev)
        if who is not None:
            who.events += 1

    def uid(c: Customer) -> str:
        return c.email if c.userid_is_email else c.user_id

    for c in people:
        c.add(f"user_id:{uid(c)}")
        c.add(f"anonymous_id:{c.anon}")
        c.add(f"email:{c.email}")
        c.add(f"phone:{c.phone}")
        # web sign-up: everything a form reveals, with a placeholder second number
        traits: dict[str, Any] = {"Email": _email_variant(rng, c.email), "mobile": _phone_variant(rng, c.phone), "name": f"C{c.n}"}
        if rng.random() < 0.5:
            traits["contact"] = {"phoneNumber": rng.choice(["00000000000", "000-0000-0000"]), "city": "Wuhan"}
        emit({"type": "identify", "channel": "web", "userId": uid(c), "anonymousId": c.anon,
              "context": {"device": {"id": "null"}} if rng.random() < 0.3 else {}, "traits": traits}, c)

    for c in people:
        # app: device + user id (placeholder anonymousId sometimes)
        c.add(f"device_id:{c.device}")
        for _ in range(rng.randint(1, 3)):
            ev: dict[str, Any] = {"type": "track", "event": "Product Viewed", "channel": "app", "userId": uid(c),
                                  "context": {"device": {"id": c.device}}}
            if rng.random() < 0.3:
                ev["anonymousId"] = "undefined"
            emit(ev, c)
        # mini-programs: openid scoped by app, unionid joins them; the first login also gives the phone
        for app in APPS:
            c.add(f"wechat_openid:{app}/{c.openids[app]}")
            c.add(f"wechat_unionid:{c.unionid}")
            emit({"type": "identify", "channel": "miniprogram", "traits": {"phone": _phone_variant(rng, c.phone)},
                  "context": {"externalIds": [{"id": c.openids[app], "type": "wechat_openid", "collection": app},
                                              {"id": c.unionid, "type": "wechat_unionid"}]}}, c)
            emit({"type": "track", "event": "Product Viewed", "channel": "miniprogram",
                  "context": {"externalIds": [{"id": c.openids[app], "type": "wechat_openid", "collection": app}]}}, c)
        # e-commerce order, reported again by the CRM (crm id + email, sometimes a placeholder email too)
        order_seq += 1
        order = f"EC-{seed}-{order_seq}"
        c.add(f"order_id:{order}")
        c.add(f"crm_id:{c.crm_id}")
        emit({"type": "track", "event": "Order Completed", "channel": "ecommerce", "userId": uid(c),
              "properties": {"order_id": order, "revenue": 10.0, "currency": "CNY"}}, c)
        crm_traits = {"email": _email_variant(rng, c.email)} if rng.random() < 0.6 else {"email": "test@test.com"}
        emit({"type": "track", "event": "Order Completed", "channel": "crm", "traits": crm_traits,
              "context": {"externalIds": [{"id": c.crm_id, "type": "crm_id"}]},
              "properties": {"order_id": order, "revenue": 10.0, "currency": "CNY"}}, c)
        # POS: a new card and the store's phone typed at the till; the order is also reported online
        if c.pos_card:
            order_seq += 1
            pos_order = f"POS-{seed}-{order_seq}"
            c.add(f"pos_card_id:{c.pos_card}")
            c.add(f"order_id:{pos_order}")
            emit({"type": "track", "event": "Order Completed", "channel": "pos",
                  "context": {"traits": {"phone": STORE_PHONE}, "externalIds": [{"id": c.pos_card, "type": "pos_card_id"}]},
                  "properties": {"order_id": pos_order, "revenue": 5.0, "currency": "CNY"}}, c)
            emit({"type": "track", "event": "Order Completed", "channel": "ecommerce", "userId": uid(c),
                  "properties": {"order_id": pos_order, "revenue": 5.0, "currency": "CNY"}}, c)
        # customer service: the own phone; a mistyped bank hotline alone is dead
        emit({"type": "track", "event": "Support Ticket Opened", "channel": "service", "traits": {"phone": _phone_variant(rng, c.phone)}}, c)
        if rng.random() < 0.4:
            emit({"type": "track", "event": "Support Ticket Opened", "channel": "service",
                  "traits": {"phone": rng.choice(["95588", "12345"])}}, None)
            dead += 1
    # the family tablet: two customers log in on it
    for c in people[:2]:
        emit({"type": "track", "event": "Product Viewed", "channel": "app", "userId": uid(c), "context": {"device": {"id": FAMILY_DEVICE}}}, c)
    # a test message from the QA team: nothing but placeholders
    emit({"type": "identify", "channel": "web", "userId": "undefined", "traits": {"email": "test@test.com", "phone": "00000000000"}}, None)
    dead += 1
    # sources send in their own order: shuffle, keeping each customer's sign-up first is NOT required
    rng.shuffle(events)
    return TrapTraffic(events, people, dead, [f"phone:{STORE_PHONE}", f"device_id:{FAMILY_DEVICE}"])
