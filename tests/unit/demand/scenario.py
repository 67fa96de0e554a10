"""The demand end-to-end scenario, shared by the Kafka e2e test and the fast offline scenario test.

Four weeks of weekly-seasonal page views (hourly buckets, event time from 2026-01-05, a Monday) for
six (category, region) pairs: the ``interest`` measure. Week 4 carries a short x5 surge (masks in
hubei, must RESOLVE), a 30-hour -80 % dip (groceries in shanghai: transient, must RESOLVE, not become
a new normal), a -70 % collapse that holds four days (travel in shanghai, must become the
NEW_NORMAL after three) and the rebound back to the old level (a surge on the re-learned
baseline).

``traffic(seed)`` yields the raw Segment page events the Kafka test publishes; ``hourly_counts(seed)``
consumes the random generator identically and returns the per-key hourly counts the ingest agent's
pre-aggregation produces from those events, so the offline run sees exactly the same buckets.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from touchpoint_tools.simulate.sampling import poisson

HOUR_MS = 3_600_000
START_MS = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)  # a Monday
WEEKS = 4
NORMAL_WEEKS = 3
# Base page views per hour at the daily peak, per (category, region).
RATES = {("masks", "hubei"): 18.0, ("masks", "shanghai"): 12.0, ("travel", "hubei"): 10.0,
         ("travel", "shanghai"): 40.0, ("groceries", "hubei"): 14.0, ("groceries", "shanghai"): 16.0}
SURGE = ("masks", "hubei", 5.0, NORMAL_WEEKS * 168 + 10, 8)          # Mon 10:00, 8 h: resolves
COLLAPSE = ("travel", "shanghai", 0.3, NORMAL_WEEKS * 168 + 19, 96)  # Mon 19:00, 4 days: new normal
DIP = ("groceries", "shanghai", 0.2, NORMAL_WEEKS * 168 + 35, 30)    # Tue 11:00, 30 h: resolves
REBOUND_HOUR = COLLAPSE[3] + COLLAPSE[4]                            # Fri 19:00, back to 1.0
SHIFT_KEYS = {"category_region:masks|hubei", "category:masks", "region:hubei", "category_region:groceries|shanghai",
              "category:groceries", "category_region:travel|shanghai", "category:travel", "region:shanghai",
              "channel:web"}
#: Buckets within which an alert must open after the shift starts (hourly buckets). Checked on
#: seeds 1-100 offline; the latencies seen there (buckets after the start, all seeds): surge 0-1
#: (once a false surge alert opened 3 h before was still open), category:masks 0-1, collapse 0-7
#: (95 % <= 3), rebound 0-9 (95 % <= 5). The collapse
#: (-70 % from ~30/h at 11:00) and the rebound (a ~x3 step at the nightly trough of a ~5/h key,
#: judged on the re-learned baseline) are slower on draws that start close to the old level.
SURGE_WITHIN = 3
COLLAPSE_WITHIN = 8
DIP_WITHIN = 20  # a ~12/h key: the detector opens 3-10 h in, the volume rule (40 views) 3-7 h later
REBOUND_WITHIN = 10


def shape(hour: int) -> float:
    """Relative traffic of an hour of the week: quiet nights, a midday and an evening peak, busier weekends."""
    h, day = hour % 24, (hour // 24) % 7
    daily = 0.35 + 0.45 * math.exp(-((h - 12) ** 2) / 8) + 0.65 * math.exp(-((h - 20) ** 2) / 6)
    return daily * (1.3 if day >= 5 else 1.0)


def factor(category: str, region: str, hour: int) -> float:
    f = 1.0
    for cat, reg, mult, start, length in (SURGE, COLLAPSE, DIP):
        if cat == category and reg == region and start <= hour < start + length:
            f *= mult
    return f


def _draws(seed: int) -> Iterator[tuple[int, list[tuple[int, str, str, int]]]]:
    """Per hour: the hour and its (timestamp, category, region, visitor) draws, in generation order."""
    rng = random.Random(seed)
    for hour in range(WEEKS * 168):
        batch = []
        for (category, region), rate in RATES.items():
            for _ in range(poisson(rng, rate * shape(hour) * factor(category, region, hour), normal_above=None)):
                batch.append((START_MS + hour * HOUR_MS + rng.randrange(HOUR_MS), category, region))
        out = []
        for ts, category, region in sorted(batch):
            out.append((ts, category, region, rng.randrange(400)))
        yield hour, out


def traffic(seed: int = 5) -> list[dict[str, Any]]:
    """Page views in event-time order, hour by hour (raw Segment JSON)."""
    out: list[dict[str, Any]] = []
    for _, draws in _draws(seed):
        for ts, category, region, visitor in draws:
            n = len(out)
            stamp = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            out.append({"type": "page", "messageId": f"dm-{seed}-{n}", "anonymousId": f"visitor-{visitor}",
                        "timestamp": stamp, "channel": "web", "name": f"{category} listing", "category": category,
                        "properties": {"category": category, "region": region}})
    return out


def keys_of(category: str, region: str) -> tuple[str, ...]:
    """The dimension keys one page view of the scenario counts towards."""
    return (f"category:{category}", f"region:{region}", "channel:web", f"category_region:{category}|{region}")


def hourly_counts(seed: int = 5) -> list[Counter[str]]:
    """Per hour of the scenario, the count of each dimension key (what the ingest agent sends)."""
    out: list[Counter[str]] = []
    for _, draws in _draws(seed):
        c: Counter[str] = Counter()
        for _, category, region, _ in draws:
            c.update(keys_of(category, region))
        out.append(c)
    return out


def hour_of(iso: str) -> int:
    ts = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    return (ts - START_MS) // HOUR_MS


def check_alerts(alerts: list[dict[str, Any]], fail: Callable[[str], None] | None = None) -> list[str]:
    """The scenario's assertions; returns the problems found (and raises AssertionError unless ``fail``
    collects them)."""
    problems: list[str] = []

    def bad(text: str) -> None:
        problems.append(text)

    opens = [a for a in alerts if a["state"] == "OPEN"]
    # Normal weeks after the cold-start week: at most one false OPEN per key and week.
    per_key_week = Counter((a["key"], hour_of(a["bucket_start"]) // 168) for a in opens
                           if 168 <= hour_of(a["bucket_start"]) < NORMAL_WEEKS * 168)
    if any(n > 1 for n in per_key_week.values()):
        bad(f"more than one false OPEN per key-week: {per_key_week}")

    by_id: dict[str, list[str]] = {}
    ends: dict[str, int] = {}
    for a in alerts:
        by_id.setdefault(a["alert_id"], []).append(a["state"])
        if a["state"] in ("RESOLVED", "NEW_NORMAL"):
            ends[a["alert_id"]] = hour_of(a["bucket_start"])

    def first_open(key: str, direction: str, start: int, within: int) -> dict[str, Any] | None:
        """The alert covering the shift: opened within ``within`` buckets of its start, or
        (a false alert just before it) already open in that direction when it starts."""
        mine = [a for a in opens if a["key"] == key and a["direction"] == direction]
        found = [a for a in mine if start <= hour_of(a["bucket_start"]) < start + within]
        found += [a for a in mine if hour_of(a["bucket_start"]) < start and ends.get(a["alert_id"], 10**9) >= start]
        if not found:
            bad(f"no {direction} OPEN on {key} within {within} buckets of hour {start}")
            return None
        return found[0]

    surge = first_open("category_region:masks|hubei", "surge", SURGE[3], SURGE_WITHIN)
    collapse = first_open("category_region:travel|shanghai", "collapse", COLLAPSE[3], COLLAPSE_WITHIN)
    dip = first_open("category_region:groceries|shanghai", "collapse", DIP[3], DIP_WITHIN)
    rebound = first_open("category_region:travel|shanghai", "surge", REBOUND_HOUR, REBOUND_WITHIN)
    first_open("category:masks", "surge", SURGE[3], SURGE_WITHIN)
    if surge is not None and by_id[surge["alert_id"]][-1] != "RESOLVED":
        bad(f"surge alert did not resolve: {by_id[surge['alert_id']]}")
    if collapse is not None and by_id[collapse["alert_id"]][-1] != "NEW_NORMAL":
        bad(f"collapse alert did not become the new normal: {by_id[collapse['alert_id']]}")
    if dip is not None and (by_id[dip["alert_id"]][-1] != "RESOLVED" or ends[dip["alert_id"]] > DIP[3] + DIP[4] + 48):
        bad(f"the 30-hour dip did not resolve within two days of its end: {by_id[dip['alert_id']]}")
    if collapse is not None and collapse["alert_id"] in ends and ends[collapse["alert_id"]] < COLLAPSE[3] + 70:
        bad("the collapse ended before it had held three days")
    if rebound is not None and rebound["alert_id"] not in by_id:
        bad("rebound alert has no record")  # pragma: no cover
    # Nothing opens on keys the shifts do not touch, after the normal weeks.
    untouched = [a for a in opens if a["key"] not in SHIFT_KEYS and hour_of(a["bucket_start"]) >= NORMAL_WEEKS * 168]
    if len(untouched) > 2:
        bad(f"alerts on untouched keys: {untouched}")
    if fail is None and problems:
        raise AssertionError("; ".join(problems))
    return problems
