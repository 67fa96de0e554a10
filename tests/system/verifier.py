"""The system tests' verifier: every event has a known effect, checked after the faults.

Traffic is generated from a seeded population so every record's fate is known in advance:

- valid events (unique messageIds): each is applied exactly once; the expected profiles are the
  connected components of the identifiers they carry (the identity oracle, union-find), with
  exact event counts and channel counts per component;
- client duplicates (the same bytes re-sent): recognised, counted nowhere;
- bad records: each is dead-lettered with its known reason (the DLQ is at-least-once: after a
  crash a poison record may be dead-lettered twice, with the same source claim, so letters are
  counted by distinct ``tp.source.*`` claim).

:func:`verify` then compares the live system with the oracle: the Redis identity graph
(``id:`` keys: stitching exact, one live profile per component), ``touchpoint profiles dump``
(no event lost, none double-counted, channels exact) and the DLQ topic.

The traffic is conflict-free by construction (one value of each identifier type per person,
at most 4 merges per person, so no unique/limit/supernode rule is ever in play), which is the
condition under which invariant 3 promises exactly the oracle's components.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis import Redis

from streams.cli.send import publish
from streams.events.model import Touchpoint
from streams.identity.model import Identifier, fmt
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.kafka.reading import read_to_end
from streams.kafka.topics import DLQ, INPUT
from streams.settings import Settings
from tests.fixtures.stack import run_cli
from touchpoint_tools.oracle import components

__all__ = ["Person", "Traffic", "make_traffic", "verify", "publish_records", "PacedPublisher", "Report"]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CHANNELS = ("web", "app", "miniprogram", "ecommerce", "pos", "crm", "service")


@dataclass(frozen=True)
class Person:
    n: int
    user_id: str
    email: str      # raw, mixed case (as a person types it)
    phone: str      # raw national format with spaces
    device_id: str
    anonymous_id: str

    def raw_pii(self) -> list[str]:
        """Every form of this person's email/phone that must never appear downstream (invariant 7)."""
        digits = self.phone.replace(" ", "")
        return [self.email, self.email.lower(), self.email.strip().lower(), self.phone, digits, "+86" + digits]


@dataclass
class Traffic:
    """What is sent (``records``, in order) and what each record must do."""

    seed: int
    people: list[Person]
    records: list[bytes] = field(default_factory=list)
    valid: dict[str, dict[str, Any]] = field(default_factory=dict)  # messageId -> event (first copy)
    bad: list[tuple[bytes, str]] = field(default_factory=list)      # (record, expected reason)

    def extend(self, other: Traffic) -> None:
        self.records.extend(other.records)
        self.valid.update(other.valid)
        self.bad.extend(other.bad)

    def chunks(self, n: int) -> list[list[bytes]]:
        size = -(-len(self.records) // n)
        return [self.records[i:i + size] for i in range(0, len(self.records), size)]


def people(seed: int, count: int) -> list[Person]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        tag = f"{seed}x{i}"
        first = rng.choice(["Ann", "Bo", "Chen", "Dai", "Eve", "Fang", "Gus", "Hua"])
        out.append(Person(
            n=i, user_id=f"u{tag}", email=f"{first}.Lee{tag}@Example.com",
            phone=f"139 {seed % 10000:04d} {i:04d}", device_id=f"dev-{tag}", anonymous_id=f"anon-{tag}",
        ))
    return out


def _event(rng: random.Random, person: Person, mid: str, ts_ms: int) -> dict[str, Any]:
    """One valid event of ``person`` carrying a random non-empty subset of their identifiers."""
    kinds = rng.sample(["user_id", "email", "phone", "device_id", "anonymous_id"], rng.randint(1, 3))
    channel = rng.choice(CHANNELS)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"
    call = "identify" if ("email" in kinds or "phone" in kinds) and rng.random() < 0.5 else rng.choice(["track", "page"])
    ev: dict[str, Any] = {"type": call, "messageId": mid, "timestamp": iso, "channel": channel}
    if call == "track":
        ev["event"] = rng.choice(["Product Viewed", "Product Added", "Order Completed"])
        ev["properties"] = {"products": [{"product_id": f"sku-{rng.randint(1, 20)}", "category": rng.choice(["masks", "tea", "books"]),
                                          "price": 3.5, "quantity": 1}], "region": rng.choice(["hubei", "shanghai"])}
    elif call == "page":
        ev["name"] = "Home"
    traits: dict[str, Any] = {}
    ctx: dict[str, Any] = {}
    if "user_id" in kinds:
        ev["userId"] = person.user_id
    if "anonymous_id" in kinds:
        ev["anonymousId"] = person.anonymous_id
    if "device_id" in kinds:
        ctx["device"] = {"id": person.device_id}
    if "email" in kinds:
        traits["email"] = person.email
    if "phone" in kinds:
        traits["phone"] = person.phone
    if traits:
        traits["name"] = person.email.split(".")[0]
        if call == "identify":
            ev["traits"] = traits
        else:
            ctx["traits"] = traits
    if ctx:
        ev["context"] = ctx
    return ev


def make_traffic(seed: int, n_people: int, n_events: int, *, dup_rate: float = 0.05, bad_rate: float = 0.01,
                 start_ms: int = START_MS, population: list[Person] | None = None, tag: str = "") -> Traffic:
    """Seeded traffic: valid events, client duplicates (exact re-sends) and a few poison records."""
    rng = random.Random(seed * 7919 + 1)
    pop = population if population is not None else people(seed, n_people)
    traffic = Traffic(seed, pop)
    for i in range(n_events):
        mid = f"m{seed}{tag}-{i:06d}"
        ev = _event(rng, rng.choice(pop), mid, start_ms + i * 1000)
        raw = orjson.dumps(ev)
        traffic.records.append(raw)
        traffic.valid[mid] = ev
        if rng.random() < dup_rate:
            traffic.records.append(raw)  # a client retry: same messageId, same bytes
        if rng.random() < bad_rate:
            person = rng.choice(pop)
            poison, reason = rng.choice([
                (b'{"type": "track", "messageId": "x", "userId": ' + person.email.encode(), "not_json"),
                (orjson.dumps({"type": "track", "event": "x", "userId": person.user_id, "traits": {"email": person.email}}), "missing_message_id"),
                (orjson.dumps({"type": "purchase", "messageId": f"bad{seed}{tag}-{i}", "userId": person.user_id}), "unknown_type"),
            ])
            traffic.records.append(poison)
            traffic.bad.append((poison, reason))
    return traffic


# -- sending ---------------------------------------------------------------------------------


def publish_records(settings: Settings, records: list[bytes]) -> None:
    asyncio.run(publish(settings, settings.topic(INPUT), records))


class PacedPublisher(threading.Thread):
    """Publishes records in small slices at about ``rate`` records/s in the background (bounded)."""

    def __init__(self, settings: Settings, records: list[bytes], rate: float, slice_size: int = 50) -> None:
        super().__init__(daemon=True)
        self.settings, self.records, self.rate, self.slice_size = settings, records, rate, slice_size
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        from streams.kafka.client import client_options

        producer = AIOKafkaProducer(**client_options(self.settings), acks="all", enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            started = time.monotonic()
            for i in range(0, len(self.records), self.slice_size):
                futures = [await producer.send(self.settings.topic(INPUT), value=r) for r in self.records[i:i + self.slice_size]]
                for fut in futures:
                    await fut
                self.sent = i + len(futures)
                ahead = self.sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()

    def finish(self, timeout_s: float = 120.0) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "publisher did not finish in time"
        if self.error is not None:
            raise self.error


# -- the oracle ------------------------------------------------------------------------------


@dataclass
class Expected:
    identifiers: dict[str, Identifier]                  # message id -> identifiers (normalised, hashed)
    comps: set[frozenset[Identifier]]
    per_component: dict[frozenset[Identifier], dict[str, Any]]


def expected(settings: Settings, traffic: Traffic) -> Expected:
    normalizer = Normalizer(PiiHasher(settings.pii_key), settings.default_phone_region)
    idents: dict[str, tuple[Identifier, ...]] = {}
    channel: dict[str, str] = {}
    for mid, ev in traffic.valid.items():
        t = normalizer.normalize(ev, START_MS)
        assert isinstance(t, Touchpoint), (mid, t)
        idents[mid] = tuple(t.identifiers)
        channel[mid] = t.channel or "unknown"
    comps = components(idents.values())
    owner = {i: c for c in comps for i in c}
    per: dict[frozenset[Identifier], dict[str, Any]] = {c: {"event_count": 0, "channels": Counter()} for c in comps}
    for mid, ids in idents.items():
        facts = per[owner[ids[0]]]
        facts["event_count"] += 1
        facts["channels"][channel[mid]] += 1
    return Expected(idents, comps, per)  # type: ignore[arg-type]


# -- checking --------------------------------------------------------------------------------


@dataclass
class Report:
    events: int
    profiles: int
    dead_letters: int
    dead_letter_records: int  # raw DLQ records (>= dead_letters when a poison record was redelivered)
    seconds: float

    def line(self) -> str:
        return (f"{self.events} events -> {self.profiles} profiles, {self.dead_letters} dead letters"
                f" ({self.dead_letter_records} DLQ records), verified in {self.seconds:.1f}s")


def graph_owner(settings: Settings, idents: set[Identifier]) -> dict[Identifier, str | None]:
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        keys = [f"{settings.namespace}:id:{fmt(i)}" for i in idents]
        order = list(idents)
        values: list[str | None] = []
        for k in range(0, len(keys), 1000):
            values.extend(redis.mget(keys[k:k + 1000]))
        return dict(zip(order, values, strict=True))
    finally:
        redis.close()


def dump_profiles(settings: Settings) -> dict[str, dict[str, Any]]:
    result = run_cli(settings, "profiles", "dump", timeout_s=180)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rows = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {r["profile_id"]: r for r in rows}


async def _dlq(settings: Settings) -> list[dict[str, str]]:
    out = []
    async for rec in read_to_end(settings, settings.topic(DLQ)):
        out.append({k: v.decode() for k, v in rec.headers})
    return out


def dead_letters(settings: Settings) -> list[dict[str, str]]:
    return asyncio.run(_dlq(settings))


def verify(settings: Settings, traffic: Traffic) -> Report:
    """Assert the system's final state is exactly the oracle's; return counts for the test log."""
    started = time.monotonic()
    want = expected(settings, traffic)

    # 1. Stitching exact: the graph's components are the oracle's, one live profile each.
    all_ids = {i for c in want.comps for i in c}
    owner = graph_owner(settings, all_ids)
    missing = [fmt(i) for i, pid in owner.items() if pid is None]
    assert not missing, f"{len(missing)} identifiers unknown to the graph, e.g. {missing[:3]}"
    pid_of: dict[frozenset[Identifier], str] = {}
    for comp in want.comps:
        pids = {owner[i] for i in comp}
        assert len(pids) == 1, f"component split over profiles {sorted(pids)}: {sorted(map(fmt, comp))[:6]}"
        pid_of[comp] = pids.pop()  # type: ignore[assignment]
    assert len(set(pid_of.values())) == len(pid_of), "two oracle components share a profile (over-merged)"

    # 2. No event lost, none double-counted: the live profiles are exactly the components.
    profiles = dump_profiles(settings)
    odd = (set(profiles) ^ set(pid_of.values()))
    assert not odd, (
        f"live profiles differ from the oracle: {len(set(profiles) - set(pid_of.values()))} extra,"
        f" {len(set(pid_of.values()) - set(profiles))} missing: {sorted(odd)[:5]}\n" + explain(settings, set(sorted(odd)[:3])))
    wrong = []
    for comp, pid in pid_of.items():
        got = profiles[pid]
        facts = want.per_component[comp]
        if got["event_count"] != facts["event_count"] or got["channels"] != dict(facts["channels"]):
            wrong.append((pid, got["event_count"], facts["event_count"], got["channels"], dict(facts["channels"])))
    if wrong:
        first = wrong[0][0]
        mids = set(want.identifiers)  # look for every expected message id
    assert not wrong, (f"{len(wrong)} profiles differ from the oracle (pid, got, want, ...): {wrong[:5]}\n"
                       + explain(settings, {first}, mids))
    total = sum(p["event_count"] for p in profiles.values())
    assert total == len(traffic.valid), (total, len(traffic.valid))

    # 3. Every bad record is dead-lettered with its reason (counted by distinct source claim).
    letters = dead_letters(settings)
    by_claim: dict[tuple[str, str, str], str] = {}
    for h in letters:
        by_claim[(h["tp.source.topic"], h["tp.source.partition"], h["tp.source.offset"])] = h["tp.reason"]
    reasons = Counter(by_claim.values())
    assert reasons == Counter(r for _, r in traffic.bad), (dict(reasons), dict(Counter(r for _, r in traffic.bad)))
    return Report(len(traffic.valid), len(profiles), len(by_claim), len(letters), time.monotonic() - started)


def wait_idle(settings: Settings, *workers: Any, timeout_s: float = 150.0) -> None:
    idle = run_cli(settings, "wait-idle", "--timeout", str(int(timeout_s)), "--settle", "3", timeout_s=timeout_s + 30)
    if idle.returncode != 0:
        raise AssertionError(idle.stderr.decode()[-2000:] + "\n" + "\n".join(stuck_report(w) for w in workers))


def stuck_report(worker: Any, lines: int = 400) -> str:
    """A live worker's log tail after it dumped its threads' stacks and its asyncio tasks (mode's
    SIGUSR1 handler): what a worker that stopped making progress was waiting on."""
    if worker.alive():
        worker.proc.send_signal(signal.SIGUSR1)
        time.sleep(3)
    return worker.log_tail(lines)


# -- the identity graph as comparable data ---------------------------------------------------


def graph_snapshot(redis_url: str, namespace: str, with_dedup: bool = True) -> dict[str, Any]:
    """Every key of a namespace as plain data, for comparing a rebuilt graph with the original.

    Merge bridges (``pe:``) are compared as a multiset of undirected links and stored replies
    (``dres:``) by their decoded content; the dedup window's ``dw:`` hashes as one ``"dw:"`` entry
    ``{"<shard>:<field hex>": tag}`` (the slice an id sits in depends on when it was written);
    TTLs are ignored.
    """
    redis = Redis.from_url(redis_url, decode_responses=True)
    raw = Redis.from_url(redis_url)
    prefix = namespace + ":"
    out: dict[str, Any] = {}
    try:
        for key in redis.scan_iter(match=prefix + "*", count=1000):
            short = key[len(prefix):]
            if not with_dedup and short.startswith(("dedup:", "dres:", "dw:")):
                continue
            if short.startswith("dw:"):  # binary fields; which slice holds an id is timing, not state
                shard = short.rsplit(":", 1)[1]
                window = out.setdefault("dw:", {})
                for fld, tag in raw.hgetall(key).items():
                    window[f"{shard}:{fld.hex()}"] = tag.decode()
                continue
            kind = redis.type(key)
            if kind == "string":
                value: Any = redis.get(key)
                if short.startswith("dres:"):
                    outcome, pid, body = value.split("\x1f", 2)
                    d = orjson.loads(body)
                    value = (outcome, pid, d["m"] or [], sorted(orjson.dumps(_norm_change(c), option=orjson.OPT_SORT_KEYS).decode()
                                                                for c in (d["c"] or [])))
            elif kind == "hash":
                value = redis.hgetall(key)
            elif kind == "set":
                value = sorted(redis.smembers(key))
            elif kind == "list":
                items = redis.lrange(key, 0, -1)
                value = sorted(_norm_bridge(x) for x in items) if short.startswith("pe:") else items
            else:
                value = kind
            out[short] = value
    finally:
        redis.close()
        raw.close()
    return out


def _norm_change(c: dict[str, Any]) -> dict[str, Any]:
    return {k: (v or []) if k == "bridged" else v for k, v in c.items()}


def _norm_bridge(enc: str) -> str:
    x, y, rest = enc.split("\x1f", 2)
    return "\x1f".join(sorted((x, y))) + "\x1f" + rest


# -- diagnostics on failure -------------------------------------------------------------------


async def _explain(settings: Settings, pids: set[str], mids: set[str] | None = None) -> list[str]:
    from streams.kafka.topics import PROFILE_EVENTS
    from streams.profiles.agent import changelog_topic
    from streams.profiles.bundle import decoded_items

    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    keys = set(pids)
    for pid in pids:
        keys |= set(redis.smembers(f"{settings.namespace}:pl:{pid}"))
    redis.close()
    lines = [f"keys {sorted(keys)}"]
    async for r in read_to_end(settings, settings.topic(PROFILE_EVENTS)):
        for index, (key, v) in enumerate(decoded_items(r.key, r.value)):
            if key and isinstance(v, dict) and (key.decode() in keys or (mids and v.get("message_id") in mids)):
                what = v.get("control") or "event"
                lines.append(f"pe {r.partition}/{r.offset}#{index} key={key.decode()} {what} mid={v.get('message_id')} src={v.get('source')}"
                             f" from={v.get('from')} into={v.get('into')} fwd={v.get('fwd')} ch={v.get('channel')}")
    if mids:
        seen: dict[str, list[str]] = {}
        async for r in read_to_end(settings, settings.topic(INPUT)):
            try:
                mid = orjson.loads(r.value).get("messageId")
            except Exception:
                continue
            if mid in mids:
                seen.setdefault(mid, []).append(f"{r.partition}/{r.offset}")
        pe_mids = {line.split("mid=")[1].split()[0] for line in lines if line.startswith("pe ")}
        lines = [line for line in lines if not line.startswith("pe ") or any(f"key={k} " in line for k in keys)]
        for mid in sorted(mids - pe_mids):
            lines.append(f"NOT EMITTED: {mid} (input at {seen.get(mid)})")
        ends = {}
        async for r in read_to_end(settings, settings.topic(INPUT)):
            ends[r.partition] = r.offset
        lines.append(f"input end offsets {ends}")
        reasons = Counter()
        async for r in read_to_end(settings, settings.topic(DLQ)):
            h = {k: v.decode() for k, v in r.headers}
            reasons[(h.get("tp.reason"), h.get("tp.stage"), h.get("tp.message", "")[:120])] += 1
        lines += [f"dlq {k}: {n}" for k, n in reasons.items() if k[0] not in ("not_json", "missing_message_id", "unknown_type")]
        redis = Redis.from_url(settings.redis_url, decode_responses=True)
        for mid in sorted(mids - pe_mids):
            lines.append(f"redis dedup:{mid} = {redis.get(f'{settings.namespace}:dedup:{mid}')} dres={redis.get(f'{settings.namespace}:dres:{mid}')!r}")
        redis.close()
    async for r in read_to_end(settings, changelog_topic(settings.app_id)):
        if r.key and r.key.decode() in keys:
            v = orjson.loads(r.value) if r.value else None
            short = {k: v[k] for k in ("n", "po", "tomb", "into", "wm", "ab") if v and k in v} if v else None
            lines.append(f"cl {r.partition}/{r.offset} key={r.key.decode()} {short}")
    return lines


def explain(settings: Settings, pids: set[str], mids: set[str] | None = None) -> str:
    """Every profile-events and changelog record of these profiles (and their losers), and every
    profile-events record carrying one of ``mids``, for a failure message."""
    try:
        return f"expected message ids {sorted(mids or ())}\n" + "\n".join(asyncio.run(_explain(settings, pids, mids)))
    except Exception as exc:  # diagnostics must not hide the assertion
        return f"(explain failed: {exc!r})"
