"""Security on the private system stack.

- Kafka SASL/SCRAM-SHA-512: the stack has a SASL_PLAINTEXT listener with a user seeded at format
  time (tests/system/conftest.py); a worker and every CLI command used here authenticate with
  TOUCHPOINT_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT + SCRAM credentials; a wrong password fails
  clearly (non-zero exit, an authentication error in the message; a worker never becomes ready).
- Redis ACL: the same worker uses a Redis user limited to ``~<ns>:*`` and the read, write,
  scripting and connection command categories (``redis://user:pass@...``); the user cannot read
  another namespace's keys nor run dangerous commands. The default user is left alone on this
  dedicated Redis.
- No raw PII (invariant 7): after traffic carrying raw emails and phones (valid events and
  poison records), scan the worker's log file, every topic of the namespace (keys, values,
  headers), every Redis key and value of the namespace, and /metrics.
- Erasure end to end (invariant 5): three people erased by their email as typed; once the
  compacted topics have been compacted (forced here: the topics' max.compaction.lag.ms is a day),
  none of their identifiers (email, phone, user id, device id, anonymous id), their keyed hashes
  or the SHA-1 digests of their identifiers is anywhere but in the two 7-day transit topics (the
  raw input and profile-events) and Redis's suppression keys (docs/identity.md, rights).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis import Redis
from redis.exceptions import NoPermissionError, ResponseError

from streams.ingest.pii import PiiHasher
from streams.kafka.client import client_options
from streams.kafka.reading import partitions_of, read_to_end
from tests.fixtures.stack import free_port, run_cli
from tests.system.conftest import SCRAM_PASSWORD, SCRAM_USER
from tests.system.verifier import make_traffic, publish_records, verify, wait_idle

pytestmark = [pytest.mark.system, pytest.mark.integration]

# +time: the dedup window's slices follow Redis's own clock (resolve.lua), and TIME is in no category but @fast
ACL_CATEGORIES = ["+@read", "+@write", "+@scripting", "+@connection", "-@dangerous", "+time"]


def pii_patterns(people) -> list[re.Pattern[bytes]]:
    """Raw emails (any case) and phones (as typed, national digits, E.164); digit runs only when
    not inside a longer hex/digit string (a keyed hash is hex and may contain any 11 digits)."""
    pats = []
    for p in people:
        pats.append(re.compile(re.escape(p.email.encode()), re.IGNORECASE))
        digits = p.phone.replace(" ", "")
        pats.append(re.compile(re.escape(p.phone.encode())))
        pats.append(re.compile(rb"(?<![0-9a-fA-F])" + re.escape(digits.encode()) + rb"(?![0-9a-fA-F])"))
        pats.append(re.compile(re.escape(b"+86" + digits.encode())))
    return pats


def find_pii(blob: bytes, pats: list[re.Pattern[bytes]]) -> list[bytes]:
    hits = []
    for pat in pats:
        m = pat.search(blob)
        if m:
            hits.append(blob[max(0, m.start() - 60):m.end() + 20])
    return hits


async def all_topic_bytes(settings) -> dict[str, bytes]:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(settings.namespace + ".")]
    finally:
        await admin.close()
    out = {}
    for topic in topics:
        parts = []
        async for r in read_to_end(settings, topic):
            parts += [r.key or b"", r.value or b""] + [k.encode() + b"=" + v for k, v in r.headers]
        out[topic] = b"\n".join(parts)
    return out


def erased_patterns(settings, people) -> list[re.Pattern[bytes]]:
    """What must be gone after an erasure: raw identifiers, keyed hashes, SHA-1 digests of TYPE:VALUE."""
    hasher = PiiHasher(settings.pii_key)
    pats = pii_patterns(people)
    for p in people:
        digits = p.phone.replace(" ", "")
        stored = [("user_id", p.user_id), ("device_id", p.device_id), ("anonymous_id", p.anonymous_id),
                  ("email", hasher.hash("email", p.email.strip().lower())), ("phone", hasher.hash("phone", "+86" + digits))]
        for kind, value in stored:
            pats.append(re.compile(rb"(?<![0-9A-Za-z])" + re.escape(value.encode()) + rb"(?![0-9A-Za-z])"))
            pats.append(re.compile(hashlib.sha1(f"{kind}:{value}".encode()).hexdigest().encode()))
    return pats


async def compact_now(settings) -> list[str]:
    """Make the broker compact every compacted topic of the namespace now (what max.compaction.lag.ms
    does within a day): roll the segments with a filler record, then wait for the cleaner."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.namespace + ".")
                 and (t.endswith("-changelog") or t in (settings.topic("profile-updates"), settings.topic("identity.keys")))]
        fast = {"cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.001", "min.compaction.lag.ms": "0",
                "max.compaction.lag.ms": "500", "delete.retention.ms": "86400000"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=fast) for t in names])
        tps = await partitions_of(admin, names)
    finally:
        await admin.close()
    await asyncio.sleep(1.5)
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        for tp in tps:  # the next append rolls the segment holding the erasure's tombstones
            await producer.send_and_wait(tp.topic, b"{}", key=b"~compact-now", partition=tp.partition)
    finally:
        await producer.stop()
    return names


def redis_bytes(url: str, namespace: str, skip: tuple[bytes, ...] = ()) -> bytes:
    redis = Redis.from_url(url)
    parts = []
    try:
        for key in redis.scan_iter(match=namespace + ":*", count=1000):
            if key.startswith(skip):
                continue
            parts.append(key)
            kind = redis.type(key)
            if kind == b"string":
                parts.append(redis.get(key) or b"")
            elif kind == b"hash":
                for k, v in redis.hgetall(key).items():
                    parts += [k, v]
            elif kind == b"list":
                parts += redis.lrange(key, 0, -1)
            elif kind == b"set":
                parts += list(redis.smembers(key))
    finally:
        redis.close()
    return b"\n".join(parts)


def test_scram_worker_with_redis_acl_user_and_no_raw_pii(system_stack, tmp_path, start_worker):
    started = time.monotonic()
    cfg = system_stack.cfg
    ns = f"sec{uuid.uuid4().hex[:8]}"
    admin = Redis(host="127.0.0.1", port=cfg.redis_port)
    user, password = f"tp-{ns}", uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", f"~{ns}:*", "resetchannels", *ACL_CATEGORIES)
    try:
        settings = system_stack.settings(
            tmp_path, namespace=ns, kafka_bootstrap=f"127.0.0.1:{system_stack.sasl_port}", kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=SCRAM_USER, kafka_sasl_password=SCRAM_PASSWORD,
            redis_url=f"redis://{user}:{password}@127.0.0.1:{cfg.redis_port}/0")

        # The ACL user is really confined.
        confined = Redis.from_url(settings.redis_url)
        assert confined.set(f"{ns}:probe", "1") and confined.delete(f"{ns}:probe") == 1
        with pytest.raises(NoPermissionError):
            confined.get("someone-else:id:user_id:u1")
        with pytest.raises((NoPermissionError, ResponseError)):
            confined.flushall()
        confined.close()

        traffic = make_traffic(seed=31, n_people=60, n_events=800, bad_rate=0.03)
        worker = start_worker(settings)
        publish_records(settings, traffic.records)
        wait_idle(settings, worker)
        report = verify(settings, traffic)  # profiles dump and DLQ read over SASL, graph read as the ACL user

        # Erasure (invariant 5): three people, by their email as typed.
        gone = traffic.people[:3]
        for p in gone:
            erased = run_cli(settings, "erase", "--id", f"email:{p.email}")
            assert erased.returncode == 0 and orjson.loads(erased.stdout)["erased"], erased.stderr.decode()
        wait_idle(settings, worker)

        # No raw email or phone anywhere (invariant 7).
        pats = pii_patterns(traffic.people)
        metrics = worker.get("/metrics")[1]
        worker.stop()
        places = {"worker log": worker.log_path.read_bytes(), "/metrics": metrics,
                  "redis": redis_bytes(settings.redis_url, ns), **asyncio.run(all_topic_bytes(settings))}
        assert len(places) >= 7, sorted(places)  # 5+ topics and their changelogs, log, metrics, redis
        raw_input = places.pop(settings.topic("touchpoints"))  # upstream's raw records: the one place raw PII is expected
        leaks = {where: hits[:2] for where, blob in places.items() if (hits := find_pii(blob, pats))}
        assert not leaks, leaks
        # The scan does find raw PII where it is expected: in the input topic (sanity of the scan).
        assert find_pii(raw_input, pats)
        scanned = {k: len(v) for k, v in places.items()}

        # The erased people: nowhere once the compacted topics are compacted, but in the 7-day transit
        # topics (raw input, profile-events) and Redis's suppression keys (supp:<sha1>, by design).
        erased_pats = erased_patterns(settings, gone)
        assert find_pii(raw_input, erased_pats) and find_pii(places[settings.topic("profile-events")], erased_pats)  # the scan sees them
        transit = {settings.topic("profile-events")}
        # before compaction the compacted topics still hold their old values (the scan can fail)
        uncompacted = sorted(where for where, blob in places.items() if where not in transit and find_pii(blob, erased_pats))
        assert settings.topic("profile-updates") in uncompacted, uncompacted
        compacted = asyncio.run(compact_now(settings))
        deadline = time.monotonic() + 120
        while True:
            after = {"redis": redis_bytes(settings.redis_url, ns, skip=(f"{ns}:supp:".encode(),)), "worker log": worker.log_path.read_bytes(),
                     "/metrics": metrics, **asyncio.run(all_topic_bytes(settings))}
            after.pop(settings.topic("touchpoints"))
            left = {where: hits[:2] for where, blob in after.items() if where not in transit and (hits := find_pii(blob, erased_pats))}
            if not left or time.monotonic() > deadline:
                break
            time.sleep(5)  # the log cleaner runs every 15 s
        assert not left, (left, compacted)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
    print(f"\n[security: SCRAM-SHA-512 + Redis ACL user] {report.line()}; scanned {sum(scanned.values()) // 1024} KiB in"
          f" {len(scanned)} places, no raw PII; {len(gone)} erased people gone from {len(after) - len(transit)} places"
          f" ({len(compacted)} compacted topics; before compaction in {uncompacted}); total {time.monotonic() - started:.0f}s")


def test_a_redis_user_without_the_scripts_commands_is_refused_at_start(system_stack, tmp_path):
    """An ACL written before the dedup window (no +time): a one-line refusal naming the grant, exit 2,
    instead of a worker whose every event fails."""
    cfg = system_stack.cfg
    ns = f"sec{uuid.uuid4().hex[:8]}"
    admin = Redis(host="127.0.0.1", port=cfg.redis_port)
    user, password = f"tp-{ns}", uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", f"~{ns}:*", "resetchannels",
                          *[c for c in ACL_CATEGORIES if c != "+time"])
    try:
        settings = system_stack.settings(tmp_path, namespace=ns, redis_url=f"redis://{user}:{password}@127.0.0.1:{cfg.redis_port}/0")
        worker = run_cli(settings, "worker", timeout_s=90)
        assert worker.returncode == 2, worker.stderr.decode()[-2000:]
        err = worker.stderr.decode()
        assert "may not run the identity scripts' commands" in err and "+time" in err and "Traceback" not in err, err
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_wrong_scram_password_fails_clearly(system_stack, tmp_path, start_worker):
    started = time.monotonic()
    settings = system_stack.settings(
        tmp_path, kafka_bootstrap=f"127.0.0.1:{system_stack.sasl_port}", kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=SCRAM_USER, kafka_sasl_password="wrong-password")
    result = run_cli(settings, "wait-idle", "--timeout", "10", timeout_s=60)
    assert result.returncode != 0
    message = result.stderr.decode()
    assert re.search(r"(?i)authenticat", message), message[-1500:]

    worker = start_worker(settings.with_(web_port=free_port()), ready=False)
    deadline = time.monotonic() + 40
    log = ""
    while time.monotonic() < deadline:
        log = worker.log_path.read_text(errors="replace")
        if re.search(r"(?i)authentication failed|SaslAuthentication", log) or worker.proc.poll() is not None:
            break
        time.sleep(0.5)
    assert re.search(r"(?i)authentication failed|SaslAuthentication", log), worker.log_tail()
    try:
        status = worker.get("/readyz", timeout=2)[0]
    except OSError:
        status = None
    assert status != 200
    print(f"\n[security: wrong SCRAM password] CLI exit {result.returncode}, worker "
          f"{'exited ' + str(worker.proc.returncode) if worker.proc.poll() is not None else 'not ready'}; {time.monotonic() - started:.0f}s")
