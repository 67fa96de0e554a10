"""Hostile requests to the collector (issue 21): deep nesting, bad encodings, foreign Host and
Origin headers, rate-limit abuse, a Kafka that went away. Each failed on the code before the fix."""


import orjson
import pytest

from streams.collector.app import CollectorConfig
from streams.web.guard import HostPolicy
from tests.unit.collector.test_app import KEY, Clock, FakePublisher, basic, ev, post


def deep(levels: int) -> bytes:
    """``levels`` nested objects as JSON text (orjson itself refuses to write more than 254)."""
    return b'{"x":' * levels + b"1" + b"}" * levels


def with_raw(doc: dict, field: str, raw: bytes) -> bytes:
    """``doc`` as JSON with one more top-level field whose value is the raw JSON ``raw``."""
    return orjson.dumps(doc)[:-1] + b',"' + field.encode() + b'":' + raw + b"}"


@pytest.mark.parametrize("levels", [80, 300, 1000])
async def test_deep_nesting_is_a_400_naming_the_event_not_a_500(make, levels):
    client, pub = await make(CollectorConfig(write_keys=frozenset({KEY}), max_event_bytes=32_768, max_batch_bytes=100_000))
    batch = b'{"batch": [' + orjson.dumps(ev(1)) + b"," + with_raw(ev(2), "properties", deep(levels)) + b"]}"
    status, body, _ = await post(client, "/v1/batch", None, basic(KEY), raw=batch)
    assert status == 400 and body["code"] == "invalid_request", body
    assert body["errors"] == [{"index": 1, "field": "", "reason": "objects and arrays nest deeper than 64 levels", "messageId": "m2"}]
    assert not pub.records


async def test_deep_nesting_in_the_batch_context_is_a_400_too(make):
    client, pub = await make(CollectorConfig(write_keys=frozenset({KEY}), max_event_bytes=32_768, max_batch_bytes=100_000))
    status, body, _ = await post(client, "/v1/batch", None, basic(KEY), raw=with_raw({"batch": [ev(1)]}, "context", deep(300)))
    assert status == 400 and body["errors"][0]["index"] == 0 and not pub.records


async def test_nesting_within_the_limit_is_accepted(make):
    client, pub = await make(CollectorConfig(write_keys=frozenset({KEY}), max_event_bytes=32_768, max_batch_bytes=100_000))
    assert (await post(client, "/v1/track", None, basic(KEY), raw=with_raw(ev(1), "properties", deep(60))))[0] == 200
    assert len(pub.records) == 1


@pytest.mark.parametrize("raw", [b"definitely not gzip", b"\x1f\x8b\x08\x00" + bytes(range(256)), b"\x1f\x8b" + b"\x00" * 40])
async def test_garbage_with_content_encoding_gzip_is_a_400(make, raw):
    client, pub = await make()
    resp = await client.post("/v1/batch", data=raw, headers={"Content-Encoding": "gzip", "Content-Type": "application/json", **basic(KEY)})
    body = await resp.json()
    assert resp.status == 400 and body["code"] == "invalid_encoding", body
    assert not pub.records


async def test_a_foreign_host_header_is_421_on_every_route(make):
    client, pub = await make()
    for method, path in (("POST", "/v1/track"), ("GET", "/readyz"), ("GET", "/healthz")):
        resp = await client.request(method, path, json=ev(), headers={"Host": "evil.example:8088", **basic(KEY)})
        body = await resp.json()
        assert resp.status == 421 and "TOUCHPOINT_ALLOWED_HOSTS" in body["message"], (path, body)
    assert not pub.records


async def test_allowed_host_names_are_served(make):
    config = CollectorConfig(write_keys=frozenset({KEY}), hosts=HostPolicy.build("collector.internal", "", ["0.0.0.0"]))
    client, pub = await make(config)
    for host in ("collector.internal:8088", "localhost:8088", "127.0.0.1:8088", "[::1]:8088"):
        resp = await client.post("/v1/track", json=ev(), headers={"Host": host, **basic(KEY)})
        assert resp.status == 200, host


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},
])
async def test_cross_site_browser_posts_are_403(make, headers):
    client, pub = await make(CollectorConfig(write_keys=frozenset(), allow_no_auth=True))
    status, body, _ = await post(client, "/v1/track", ev(), headers)
    assert status == 403 and body["code"] == "forbidden" and not pub.records, body


async def test_an_allowed_origin_may_post(make):
    config = CollectorConfig(write_keys=frozenset({KEY}), hosts=HostPolicy.build("", "https://shop.example"))
    client, pub = await make(config)
    status, _, _ = await post(client, "/v1/track", ev(), {"Origin": "https://shop.example", "Sec-Fetch-Site": "cross-site", **basic(KEY)})
    assert status == 200 and len(pub.records) == 1


async def test_rejected_events_consume_no_rate_limit_tokens(make):
    clock = Clock()
    client, pub = await make(CollectorConfig(write_keys=frozenset({KEY}), rate_per_s=1, burst=3), clock=clock)
    for _ in range(10):  # invalid batches of 3: refused, and must not drain the bucket
        status, _, _ = await post(client, "/v1/batch", {"batch": [ev(1), ev(2), {"type": "track"}]}, basic(KEY))
        assert status == 400
    status, _, _ = await post(client, "/v1/batch", {"batch": [ev(1), ev(2), ev(3)]}, basic(KEY))
    assert status == 200 and len(pub.records) == 3


async def test_rotating_write_keys_do_not_bypass_the_limit_without_auth(make):
    clock = Clock()
    client, pub = await make(CollectorConfig(write_keys=frozenset(), allow_no_auth=True, rate_per_s=1, burst=3), clock=clock)
    answers = []
    for i in range(6):  # a new invented key per request, in the header or the body
        headers = basic(f"rotating-{i}") if i % 2 else {}
        answers.append((await post(client, "/v1/track", {**ev(i), "writeKey": f"body-{i}"}, headers))[0])
    assert answers == [200, 200, 200, 429, 429, 429] and len(pub.records) == 3


async def test_readyz_is_503_while_kafka_does_not_answer(make):
    publisher = FakePublisher()
    client, _ = await make(publisher=publisher)

    async def unreachable() -> bool:
        return False

    publisher.reachable = unreachable  # connected once, broker gone now
    resp = await client.get("/readyz")
    assert resp.status == 503 and (await resp.json()) == {"ready": False}


async def test_a_body_that_never_arrives_is_408(make):
    import asyncio

    client, pub = await make(CollectorConfig(write_keys=frozenset({KEY}), body_timeout_s=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    auth = basic(KEY)["Authorization"]
    writer.write(f"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n\r\n{{\"type\":".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert not pub.records


def test_the_connection_limit_evicts_the_oldest_idle_connections_never_busy_ones():
    from streams.collector.server import ConnectionLimit

    class Conn:
        def __init__(self, name: str) -> None:
            self.name, self.closed = name, False

        def force_close(self) -> None:
            self.closed = True

    class Server:
        def __init__(self, conns: list[Conn]) -> None:
            self.connections = conns

    conns = [Conn(f"c{i}") for i in range(5)]
    limit = ConnectionLimit(4, clock=lambda: 0.0)
    limit.busy.update({conns[0], conns[2]})  # inside a request
    limit.make_room(Server(conns))  # 5 open + 1 arriving, limit 4: two must go
    assert [c.name for c in conns if c.closed] == ["c1", "c3"] and limit.evicted == 2
    limit.make_room(Server(conns[:2]))  # under the limit: nothing happens
    assert limit.evicted == 2
