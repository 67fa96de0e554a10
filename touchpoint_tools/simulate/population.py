"""A seeded population of people who meet the company through several touchpoints.

Each person has a hidden identity (the oracle tests compare against) and shows a different
fragment of it on each channel: the website knows an anonymousId and later a userId, the app a
device id, the mini-program a WeChat openid/unionid, stores a POS card and a phone, the CRM an
email and a CRM id. Demand follows a daily and weekly rhythm per category and region, and a
scenario can multiply it (panic buying, a collapse, a rebound).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Person", "Population", "Scenario", "Shift", "SCENARIOS", "crisis", "CATEGORIES", "REGIONS", "CHANNELS"]

CHANNELS = ("web", "app", "miniprogram", "ecommerce", "pos", "crm", "service")
CATEGORIES = ("masks", "sanitizer", "groceries", "travel", "online_courses", "electronics", "apparel")
REGIONS = ("shanghai", "beijing", "guangdong", "zhejiang", "sichuan", "hubei")
_PRICES = {"masks": 3.5, "sanitizer": 6.0, "groceries": 12.0, "travel": 420.0, "online_courses": 99.0, "electronics": 260.0, "apparel": 45.0}
_CHANNEL_WEIGHTS = (0.28, 0.22, 0.18, 0.14, 0.08, 0.04, 0.06)


@dataclass(frozen=True)
class Shift:
    """Demand for ``category`` (in ``region``, or everywhere) times ``factor`` over [start, end)."""

    category: str
    factor: float
    start_ms: int
    end_ms: int
    region: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    shifts: tuple[Shift, ...] = ()

    def factor(self, category: str, region: str, ts_ms: int) -> float:
        f = 1.0
        for s in self.shifts:
            if s.category == category and (s.region is None or s.region == region) and s.start_ms <= ts_ms < s.end_ms:
                f *= s.factor
        return f


#: End of the persistent shifts: far beyond any simulated run.
FOREVER_MS = 2**62


def crisis(start_ms: int, hour_ms: int = 3_600_000) -> Scenario:
    """A crisis from ``start_ms``: two panic-buying surges that end (masks in hubei for a day,
    sanitizer everywhere for 36 hours: both must be RESOLVED) and two shifts that persist
    (travel collapses to 30 %, online courses rise x2.5: both must become the NEW_NORMAL once
    they have held three days)."""
    return Scenario("crisis", (
        Shift("masks", 5.0, start_ms + 6 * hour_ms, start_ms + 30 * hour_ms, "hubei"),
        Shift("sanitizer", 4.0, start_ms + 8 * hour_ms, start_ms + 44 * hour_ms),
        Shift("travel", 0.3, start_ms + 10 * hour_ms, FOREVER_MS),
        Shift("online_courses", 2.5, start_ms + 12 * hour_ms, FOREVER_MS),
    ))


SCENARIOS = {"none": lambda start_ms: Scenario("none"), "crisis": crisis}


@dataclass
class Person:
    """One real customer and every identifier they could show."""

    index: int
    user_id: str
    anonymous_ids: list[str]
    device_id: str
    email: str
    phone: str
    member_id: str
    crm_id: str
    pos_card_id: str
    wechat_openid: str
    wechat_unionid: str
    region: str
    favourite: str
    channels: tuple[str, ...]
    registered: bool = False
    seen: set[str] = field(default_factory=set)
    last_order: tuple[str, float, dict[str, Any]] | None = None  # (order id, amount, first product line)


class Population:
    """Generates events for ``size`` people; deterministic for a given seed."""

    def __init__(self, size: int = 1000, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.people = [self._person(i) for i in range(size)]
        self._seq = 0

    def _person(self, i: int) -> Person:
        rng = self.rng
        channels = tuple(c for c, w in zip(CHANNELS, _CHANNEL_WEIGHTS, strict=True) if rng.random() < 0.25 + w * 2)
        return Person(
            index=i,
            user_id=f"u{i:06d}",
            anonymous_ids=[str(uuid.UUID(int=rng.getrandbits(128)))],
            device_id=f"dev-{rng.getrandbits(48):012x}",
            email=f"Person.{i}@Example.com",
            phone=f"+86 138 {i // 10000 % 10000:04d} {i % 10000:04d}",
            member_id=f"M{i:07d}",
            crm_id=f"CRM-{i:06d}",
            pos_card_id=f"POS{i:08d}",
            wechat_openid=f"o{rng.getrandbits(64):016x}",
            wechat_unionid=f"un{rng.getrandbits(64):016x}",
            region=rng.choice(REGIONS),
            favourite=rng.choice(CATEGORIES),
            channels=channels or ("web",),
        )

    @staticmethod
    def rhythm(ts_ms: int) -> float:
        """Relative traffic by hour of day and weekday (UTC+8 shoppers): quiet nights, busy evenings."""
        hours = (ts_ms / 3_600_000 + 8) % 24
        day = int((ts_ms / 86_400_000 + 8 / 24 + 3) % 7)  # 0 = Monday
        daily = 0.35 + 0.65 * math.exp(-((hours - 20.5) ** 2) / 18) + 0.3 * math.exp(-((hours - 12.5) ** 2) / 6)
        return daily * (1.25 if day >= 5 else 1.0)

    @classmethod
    def mean_acceptance(cls) -> float:
        """Share of raw arrivals kept by the rhythm's thinning, averaged over a week."""
        week = [cls.rhythm(h * 3_600_000) / 1.6 for h in range(168)]
        return sum(week) / len(week)

    @classmethod
    def arrival_spacing_ms(cls, count: int, span_ms: float) -> float:
        """The ``spacing_ms`` that spreads ``count`` events (without shifts) over ``span_ms``."""
        return span_ms / max(1, count) * cls.mean_acceptance()

    def events(self, count: int, start_ms: int, spacing_ms: float, scenario: Scenario | None = None) -> Iterator[dict[str, Any]]:
        """``count`` events at event times from ``start_ms``, ``spacing_ms`` apart on average."""
        scenario = scenario or Scenario("none")
        ts = float(start_ms)
        produced = 0
        while produced < count:
            ts += self.rng.expovariate(1.0 / spacing_ms) if spacing_ms > 0 else 0.0
            ts_ms = int(ts)
            # Thin the arrivals by the daily rhythm, then boost by the scenario per person.
            if self.rng.random() > self.rhythm(ts_ms) / 1.6:
                continue
            person = self.rng.choice(self.people)
            category = person.favourite if self.rng.random() < 0.6 else self.rng.choice(CATEGORIES)
            factor = scenario.factor(category, person.region, ts_ms)
            if factor < 1.0 and self.rng.random() > factor:
                continue
            repeats = 1
            if factor > 1.0:
                repeats = int(factor) + (1 if self.rng.random() < factor - int(factor) else 0)
            for _ in range(repeats):
                if produced >= count:
                    break
                yield self.event(person, ts_ms, category)
                produced += 1

    def event(self, person: Person, ts_ms: int, category: str) -> dict[str, Any]:
        rng = self.rng
        channel = rng.choice(person.channels)
        self._seq += 1
        base: dict[str, Any] = {
            "messageId": f"sim-{self.rng.getrandbits(64):016x}-{self._seq}",
            "timestamp": datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "channel": channel,
            "context": {"location": {"region": person.region}},
        }
        ctx = base["context"]
        kind = rng.random()
        if channel == "web":
            base["anonymousId"] = person.anonymous_ids[0]
            if person.registered or kind < 0.1:
                base["userId"] = person.user_id
                person.registered = True
        elif channel == "app":
            ctx["device"] = {"id": person.device_id}
            if person.registered or kind < 0.15:
                base["userId"] = person.user_id
                person.registered = True
        elif channel == "miniprogram":
            ctx["externalIds"] = [{"id": person.wechat_openid, "type": "wechat_openid"}]
            if kind < 0.3:
                ctx["externalIds"].append({"id": person.wechat_unionid, "type": "wechat_unionid"})
        elif channel == "ecommerce":
            base["userId"] = person.user_id
            person.registered = True
        elif channel == "pos":
            ctx["externalIds"] = [{"id": person.pos_card_id, "type": "pos_card_id"}]
            ctx["store"] = {"id": f"store-{person.region}-{person.index % 5}", "region": person.region}
            if kind < 0.4:
                ctx["traits"] = {"phone": person.phone}
        elif channel == "crm":
            ctx["externalIds"] = [{"id": person.crm_id, "type": "crm_id"}, {"id": person.member_id, "type": "member_id"}]
            ctx["traits"] = {"email": person.email}
        else:  # customer service knows the phone number
            ctx["traits"] = {"phone": person.phone}

        # Occasionally a login or a profile form reveals the cross-channel identifiers.
        if kind > 0.93:
            base.update(type="identify", userId=person.user_id, traits={"email": person.email, "phone": person.phone, "region": person.region, "favourite_category": person.favourite})
            if channel in ("app", "miniprogram"):
                ctx.setdefault("externalIds", []).append({"id": person.member_id, "type": "member_id"})
            return base
        if channel == "web" and kind < 0.5:
            base.update(type="page", name=f"{category} listing", category=category, properties={"category": category, "path": f"/c/{category}"})
            return base
        if channel == "app" and kind < 0.45:
            base.update(type="screen", name=f"{category} list", category=category, properties={"category": category})
            return base
        if channel == "service":
            base.update(type="track", event="Support Ticket Opened", properties={"category": category, "region": person.region})
            return base
        product = self._line(category)
        buy = channel == "pos" or rng.random() < 0.35
        if buy:
            return self._order(base, person, category, product)
        if rng.random() < 0.2:
            base.update(type="track", event="Products Searched", properties={"query": category.replace("_", " "), "category": category, "region": person.region})
        else:
            base.update(type="track", event=rng.choice(("Product Viewed", "Product Added")), properties={"products": [product], "category": category, "region": person.region})
        return base

    def _line(self, category: str) -> dict[str, Any]:
        rng = self.rng
        return {"product_id": f"{category}-{rng.randint(1, 12):03d}", "sku": f"SKU-{category[:3].upper()}-{rng.randint(1, 99)}",
                "category": category, "price": round(_PRICES[category] * rng.uniform(0.7, 1.4), 2), "quantity": rng.randint(1, 3)}

    def _order(self, base: dict[str, Any], person: Person, category: str, product: dict[str, Any]) -> dict[str, Any]:
        """An order (one or two product lines), now and then a refund of the person's last order
        (3 %) or the same order reported again by a second system with a new messageId (1 %)."""
        rng, props = self.rng, {"region": person.region, "category": category, "currency": "CNY"}
        kind = rng.random()
        if person.last_order is not None and kind < 0.04:
            order_id, amount, line = person.last_order
            refund = kind < 0.03
            base.update(type="track", event="Order Refunded" if refund else "Order Completed",
                        properties={**props, "order_id": order_id, "revenue": amount, "products": [line], "category": line["category"]})
            if refund:
                person.last_order = None
            return base
        lines = [product] + ([self._line(category)] if rng.random() < 0.25 else [])
        order_id = f"o-{self._seq:09d}"
        revenue = round(sum(p["price"] * p["quantity"] for p in lines), 2)
        person.last_order = (order_id, revenue, product)
        base.update(type="track", event="Order Completed", properties={**props, "order_id": order_id, "revenue": revenue, "products": lines})
        return base
