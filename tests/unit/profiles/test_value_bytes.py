"""The stored value bytes are a contract (the changelog is read by recovery and the HTTP views):
a fixed record sequence must keep producing exactly the same values and sends.

The expected digests were taken from the implementation before the per-item CPU work on fold
and the stage (then once more for the ``rc`` fix below); a change here means a change of the changelog format or content: deliberate or not,
it needs a layout decision (``LAYOUT``), not a new digest alone.
"""

import hashlib
import random

import orjson

from streams.profiles.profile import Limits
from streams.profiles.stage import ProfileStage

T0 = 1_767_225_600_000
# Every event of this sequence adds at most one new category at a time (written when several new
# ones entered ``cat`` in set order, which depended on the string hash seed; now in event order).
CATEGORIES = ("masks", "groceries", "electronics", "sanitizer", "toys")


def _records(seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    pids = [f"p{i}" for i in range(20)]
    out: list[tuple[str, object]] = []
    for i in range(600):
        pid = rng.choice(pids)
        r = rng.random()
        if r < 0.02:
            a, b = rng.sample(pids, 2)
            out.append((a, {"control": "merge", "from": a, "into": b, "message_id": f"m{i}", "ts_ms": T0 + i}))
            continue
        if r < 0.023:
            out.append((pid, {"control": "erase", "profile_id": pid, "ts_ms": T0 + i}))
            continue
        cat = rng.choice(CATEGORIES)
        e: dict[str, object] = {
            "message_id": f"m{rng.randint(0, i)}" if rng.random() < 0.05 else f"m{i}",
            "type": rng.choice(["track", "track", "track", "page", "screen", "identify"]),
            "ts_ms": T0 + rng.randint(0, 3_600_000) * (1 if rng.random() < 0.9 else -1),
            "received_at_ms": T0,
            "identifiers": [f"user_id:{pid}", f"anonymous_id:a{rng.randint(0, 30)}", f"order_id:o{i}", "device_id:0000"][: rng.randint(1, 4)],
            "channel": rng.choice(["web", "app", "pos", "service"]),
            "event": rng.choice(["Order Completed", "Product Added", "Product Viewed", "Signed Up", "Checkout Started"]),
            "category": cat,
            "profile_id": pid,
            "source": f"ns.touchpoints/{rng.randint(0, 2)}/{i if rng.random() < 0.85 else rng.randint(0, i)}" if rng.random() < 0.95 else "no source",
        }
        if rng.random() < 0.5:
            e["products"] = [{"product_id": f"{cat}-1", "category": cat, "quantity": rng.randint(1, 3), "price": 2.5}] * rng.randint(1, 4)
        if rng.random() < 0.3:
            e.update(order_id=f"o{i}", revenue=rng.choice([0.1, 3.21, 25.5, 199.99]), currency=rng.choice(["CNY", "USD"]))
        if rng.random() < 0.15:
            e["traits"] = {rng.choice(["tier", "region", "age", "a", "b", "c"]): rng.choice(["gold", 30, 1.5, [1, 2], {"k": "v"}, "x" * 300])}
        if rng.random() < 0.1:
            e["consent"] = {"categoryPreferences": {rng.choice(["ads", "marketing", "analytics"]): rng.random() < 0.5}}
        out.append((pid, e))
    return out


def _digest(limits: Limits, seed: int) -> str:
    stage = ProfileStage(limits, keep_identifier=lambda f: not f.endswith(":0000"))
    table: dict[str, bytes] = {}
    queue = list(_records(seed))
    h = hashlib.sha256()
    pos = 0
    while queue:
        key, record = queue.pop(0)
        d = stage.decide(key, table.get(key), orjson.dumps(record) if pos % 3 == 0 else record, pos)
        pos += 1
        h.update(repr((key, d.outcome, d.value, [(s.key, s.value, s.must_land) for s in d.sends], d.detail, d.identifiers)).encode())
        if d.value is not None:
            table[key] = d.value
        queue.extend((s.key, orjson.loads(s.value)) for s in d.sends)
    for key in sorted(table):
        h.update(key.encode() + b"=" + table[key])
    return h.hexdigest()


def test_values_and_sends_are_byte_for_byte_those_of_the_reference():
    assert _digest(Limits(), 1) == GOLDEN_DEFAULT
    small = Limits(timeline=5, identifiers=3, traits=2, categories=2, consent=1, recent_ids=4, summary_chars=24)
    assert _digest(small, 2) == GOLDEN_SMALL


# Taken after two deliberate content changes (same LAYOUT: every reader accepts both forms):
# 1. ``rc`` keeps the full ``recent_ids`` window (it was trimmed to about half by a negative slice).
# 2. Orders per the e-commerce spec (issue 17, item 7, streams/profiles/orders.py): only completed
#    orders count, once per order id; ``oc``/``rv`` are now counted orders / net revenue, and values
#    that saw an order event carry the new optional ``od`` part. Checked against the previous code
#    on this very sequence: the outcomes, details, identifier counts and sends are the same, the
#    values differ in 13 of 20 keys (default) and 9 of 20 (small), and in those only in
#    ``oc``/``rv``/``od`` (223 -> 98 and 198 -> 100 orders: this sequence puts order ids and
#    revenue on "Checkout Started", "Product Added", ... which the old fold counted as orders).
#    A value without ``od`` is read as it is (``orders.order_totals``), see test_orders.py.
GOLDEN_DEFAULT = "a61cfe08991ae0dc89f2b4c81715a58e8c872d5d07eda249a3e6b6df308de70a"
GOLDEN_SMALL = "3415dc86c39fa948647f1cd66ac7b0eed5d492f526e38c66108e659d195d61c4"
