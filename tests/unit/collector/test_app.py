"""The collector's HTTP behaviour with a fake publisher: auth, limits, batch merging, errors."""

import base64
import gzip
from collections.abc import Sequence

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.collector.app import CollectorConfig, create_app, source_id
from streams.collector.publisher import PublishError, Record

KEY = "wk-test-1"
NOW = "2026-02-03T02:15:00.000Z"
CONFIG = CollectorConfig(write_keys=frozenset({KEY, "wk-other"}), rate_per_s=100, burst=1000, max_batch_bytes=20_000, max_event_bytes=2_000)


def basic(key: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()}


def ev(i: int = 1, **extra) -> dict:
    return {"type": "track", "event": "Viewed", "messageId": f"m{i}", "userId": f"u{i}", **extra}


class FakePublisher:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.ready = True
        self.error: str | None = None

    async def reachable(self) -> bool:
        return self.ready

    async def publish(self, records: Sequence[Record]) -> None:
        if self.error:
            raise PublishError(self.error)
        self.records.extend(records)

    def events(self) -> list[dict]:
        return [orjson.loads(v) for _, v in self.records]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def make():
    clients: list[TestClient] = []

    async def factory(config: CollectorConfig = CONFIG, publisher: FakePublisher | None = None, clock: Clock | None = None):
        publisher = publisher or FakePublisher()
        app = create_app(config, publisher, monotonic=clock or Clock(), now_iso=lambda: NOW)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, publisher

    yield factory
    for client in clients:
        await client.close()


async def post(client: TestClient, path: str, body, headers=None, raw: bytes | None = None):
    data = raw if raw is not None else orjson.dumps(body)
    resp = await client.post(path, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    return resp.status, await resp.json(), resp.headers


# -- auth ----------------------------------------------------------------------------------------

async def test_basic_auth_with_a_known_key_is_accepted(make):
    client, pub = await make()
    status, body, _ = await post(client, "/v1/track", ev(), basic(KEY))
    assert (status, body) == (200, {"success": True})
    assert len(pub.records) == 1


@pytest.mark.parametrize("headers, body_key, message", [
    ({}, None, "missing write key"),
    (basic("nope"), None, "invalid write key"),
    ({"Authorization": "Bearer " + KEY}, None, "basic auth"),
    ({"Authorization": "Basic !!!"}, None, "not valid basic auth"),
    ({}, "wrong", "invalid write key"),
    ({}, "", "missing write key"),
])
async def test_wrong_or_missing_key_is_401_and_nothing_is_published(make, headers, body_key, message):
    client, pub = await make()
    event = ev() if body_key is None else {**ev(), "writeKey": body_key}
    status, body, _ = await post(client, "/v1/track", event, headers)
    assert status == 401 and body["code"] == "unauthorized" and message in body["message"]
    assert body["success"] is False and not pub.records


async def test_write_key_in_the_body_is_accepted_and_never_published(make):
    client, pub = await make()
    status, _, _ = await post(client, "/v1/batch", {"batch": [ev(1), {**ev(2), "writeKey": KEY}], "writeKey": KEY})
    assert status == 200
    assert [e["messageId"] for e in pub.events()] == ["m1", "m2"]
    assert all(b"writeKey" not in value and KEY.encode() not in value for _, value in pub.records)


async def test_garbage_without_credentials_is_401_not_400(make):
    client, _ = await make()
    status, body, _ = await post(client, "/v1/batch", None, raw=b"{not json")
    assert status == 401
    status, body, _ = await post(client, "/v1/batch", None, raw=b"{not json", headers=basic(KEY))
    assert status == 400 and body["code"] == "invalid_json"


async def test_no_keys_and_allow_no_auth_accepts_anyone(make):
    client, pub = await make(CollectorConfig(write_keys=frozenset(), allow_no_auth=True))
    assert (await post(client, "/v1/track", ev()))[0] == 200
    assert (await post(client, "/v1/track", ev(2), basic("anything")))[0] == 200
    assert len(pub.records) == 2


async def test_no_keys_without_allow_no_auth_accepts_nobody(make):
    client, _ = await make(CollectorConfig(write_keys=frozenset()))
    assert (await post(client, "/v1/track", ev(), basic("anything")))[0] == 401


# -- routes and shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize("path, call_type", [
    ("/v1/track", "track"), ("/v1/t", "track"), ("/v1/identify", "identify"), ("/v1/i", "identify"),
    ("/v1/page", "page"), ("/v1/p", "page"), ("/v1/screen", "screen"), ("/v1/s", "screen"),
    ("/v1/group", "group"), ("/v1/g", "group"), ("/v1/alias", "alias"), ("/v1/a", "alias"),
])
async def test_single_call_endpoints_take_the_type_from_the_path(make, path, call_type):
    client, pub = await make()
    event = {"messageId": "m1", "anonymousId": "a1"}
    assert (await post(client, path, event, basic(KEY)))[0] == 200
    assert pub.events()[0]["type"] == call_type


async def test_a_type_contradicting_the_endpoint_is_400(make):
    client, pub = await make()
    status, body, _ = await post(client, "/v1/track", {**ev(), "type": "identify"}, basic(KEY))
    assert status == 400 and "does not match the endpoint /v1/track" in body["message"] and not pub.records


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/import"])
async def test_batch_endpoints(make, path):
    client, pub = await make()
    assert (await post(client, path, {"batch": [ev(1), ev(2, type="identify")]}, basic(KEY)))[0] == 200
    assert [e["type"] for e in pub.events()] == ["track", "identify"]


async def test_missing_message_id_names_the_event_and_stores_nothing(make):
    client, pub = await make()
    bad = ev(2)
    del bad["messageId"]
    status, body, _ = await post(client, "/v1/batch", {"batch": [ev(1), bad, ev(3, type="fly"), "x"]}, basic(KEY))
    assert status == 400 and body["code"] == "invalid_request"
    assert body["message"].startswith("3 of 4 events rejected, nothing stored; event 1: messageId is required")
    assert body["errors"] == [
        {"index": 1, "field": "messageId", "reason": "messageId is required (a client-generated id, stable across retries)"},
        {"index": 2, "field": "type", "reason": "type must be one of identify, track, page, screen, group, alias; got 'fly'", "messageId": "m3"},
        {"index": 3, "field": "", "reason": "an event must be a JSON object, not string"},
    ]
    assert not pub.records


@pytest.mark.parametrize("event, needle", [
    ({"type": "track", "messageId": 7, "userId": "u"}, "messageId must be a string"),
    ({"type": "track", "messageId": "x" * 101, "userId": "u"}, "at most 100 characters"),
    ({"type": "track", "messageId": "m", "context": []}, "context must be a JSON object, not array"),
])
async def test_shape_errors_say_what_is_wrong(make, event, needle):
    client, _ = await make()
    status, body, _ = await post(client, "/v1/batch", {"batch": [event]}, basic(KEY))
    assert status == 400 and needle in body["errors"][0]["reason"] and needle in body["message"]


@pytest.mark.parametrize("body, needle", [
    ([ev()], "must be a JSON object, not array"),
    ({"events": [ev()]}, "batch is missing"),
    ({"batch": {"a": 1}}, "batch is object"),
    ({"batch": [ev()], "context": "web"}, "context must be a JSON object"),
    ({"batch": [ev()], "sentAt": 5}, "sentAt must be a string"),
])
async def test_bad_request_shapes(make, body, needle):
    client, _ = await make()
    status, answer, _ = await post(client, "/v1/batch", body, basic(KEY))
    assert status == 400 and needle in answer["message"]


async def test_empty_batch_is_fine(make):
    client, pub = await make()
    assert (await post(client, "/v1/batch", {"batch": []}, basic(KEY)))[0] == 200 and not pub.records


async def test_unknown_paths_and_methods(make):
    client, _ = await make()
    assert (await client.post("/v1/fly", data=b"{}", headers=basic(KEY))).status == 404
    assert (await client.get("/v1/track", headers=basic(KEY))).status == 405


# -- enrichment -----------------------------------------------------------------------------------

async def test_batch_context_integrations_and_sent_at_are_merged_event_values_win(make):
    client, pub = await make()
    body = {
        "batch": [
            ev(1, context={"ip": "1.2.3.4", "library": {"version": "9"}}, sentAt="2026-02-03T02:14:59Z"),
            ev(2, integrations={"All": False}),
        ],
        "context": {"library": {"name": "lib", "version": "1"}, "channel": "web"},
        "integrations": {"All": True, "Mixpanel": False},
        "sentAt": "2026-02-03T02:15:00Z",
    }
    assert (await post(client, "/v1/batch", body, basic(KEY)))[0] == 200
    first, second = pub.events()
    assert first["context"] == {"library": {"name": "lib", "version": "9"}, "channel": "web", "ip": "1.2.3.4"}
    assert first["sentAt"] == "2026-02-03T02:14:59Z" and second["sentAt"] == "2026-02-03T02:15:00Z"
    assert first["integrations"] == {"All": True, "Mixpanel": False}
    assert second["integrations"] == {"All": False, "Mixpanel": False}
    assert second["context"] == {"library": {"name": "lib", "version": "1"}, "channel": "web"}


async def test_top_level_nulls_are_absent_as_in_segment(make):
    client, pub = await make()
    body = {"batch": [{"type": "page", "messageId": "m1", "userId": None, "anonymousId": "a1", "context": None, "timestamp": None}]}
    assert (await post(client, "/v1/batch", body, basic(KEY)))[0] == 200
    assert pub.events()[0] == {"type": "page", "messageId": "m1", "anonymousId": "a1", "sourceId": source_id(KEY), "receivedAt": NOW}
    assert pub.records[0][0] == b"a1"


async def test_events_carry_their_write_keys_source_id_never_the_clients(make):
    """messageId dedup is per source (issue 21): each write key stamps its own sourceId, a
    fingerprint of the key, over whatever the client wrote."""
    client, pub = await make()
    event = {"type": "track", "event": "x", "messageId": "m1", "userId": "u1", "sourceId": "crm-sync"}
    assert (await post(client, "/v1/track", event, basic(KEY)))[0] == 200
    assert (await post(client, "/v1/track", event, basic("wk-other")))[0] == 200
    first, second = pub.events()
    assert first["sourceId"] == source_id(KEY) != second["sourceId"] == source_id("wk-other")
    assert KEY not in first["sourceId"] and first["sourceId"].startswith("wk-")


async def test_received_at_is_ours(make):
    client, pub = await make()
    assert (await post(client, "/v1/track", ev(receivedAt="1999-01-01T00:00:00Z"), basic(KEY)))[0] == 200
    assert pub.events()[0]["receivedAt"] == NOW


async def test_sdk_transport_channel_moves_out_of_the_business_channel(make):
    client, pub = await make()
    body = {"batch": [ev(1, channel="server", context={"channel": "pos"}), ev(2, channel="app"), ev(3, channel="browser")]}
    assert (await post(client, "/v1/batch", body, basic(KEY)))[0] == 200
    one, two, three = pub.events()
    assert "channel" not in one and one["context"] == {"channel": "pos", "sdkChannel": "server"}
    assert two["channel"] == "app" and "context" not in two
    assert three["context"] == {"sdkChannel": "browser"}


async def test_partition_key_is_user_id_then_anonymous_id(make):
    client, pub = await make()
    body = {"batch": [
        {"type": "identify", "messageId": "1", "userId": "u1", "anonymousId": "a1"},
        {"type": "page", "messageId": "2", "anonymousId": "a1"},
        {"type": "track", "messageId": "3", "userId": 42, "event": "x"},
        {"type": "track", "messageId": "4", "event": "x", "context": {"device": {"id": "d"}}},
    ]}
    assert (await post(client, "/v1/batch", body, basic(KEY)))[0] == 200
    assert [k for k, _ in pub.records] == [b"u1", b"a1", b"42", None]


# -- sizes ----------------------------------------------------------------------------------------

async def test_a_body_over_the_batch_limit_is_413(make):
    client, pub = await make()
    body = {"batch": [ev(i, properties={"pad": "x" * 1500}) for i in range(20)]}
    status, answer, _ = await post(client, "/v1/batch", body, basic(KEY))
    assert status == 413 and answer["code"] == "too_large" and "20000 bytes" in answer["message"] and not pub.records


async def test_a_chunked_body_over_the_limit_is_413(make):
    client, _ = await make()

    async def chunks():
        yield b'{"batch": ['
        for i in range(30):
            yield orjson.dumps(ev(i, properties={"pad": "x" * 1000})) + b","
        yield b"{}]}"

    resp = await client.post("/v1/batch", data=chunks(), headers=basic(KEY))
    assert resp.status == 413


async def test_an_event_over_the_event_limit_is_413_and_named(make):
    client, pub = await make()
    body = {"batch": [ev(1), ev(2, properties={"pad": "x" * 2500})]}
    status, answer, _ = await post(client, "/v1/batch", body, basic(KEY))
    assert status == 413 and answer["errors"][0]["index"] == 1 and answer["errors"][0]["messageId"] == "m2"
    assert "the limit is 2000" in answer["message"] and not pub.records


async def test_size_and_shape_errors_together_are_400(make):
    client, _ = await make()
    body = {"batch": [{"type": "track"}, ev(2, properties={"pad": "x" * 2500})]}
    status, answer, _ = await post(client, "/v1/batch", body, basic(KEY))
    assert status == 400 and len(answer["errors"]) == 2


async def test_gzip_bodies_are_accepted_and_limited_after_decoding(make):
    client, pub = await make()
    small = gzip.compress(orjson.dumps({"batch": [ev(1), ev(2)]}))
    resp = await client.post("/v1/batch", data=small, headers={**basic(KEY), "Content-Encoding": "gzip"})
    assert resp.status == 200 and len(pub.records) == 2
    # 10 MB of spaces compress to ~10 KB: the limit must hold for what is decoded, not what is sent
    bomb = gzip.compress(b'{"batch": [' + b" " * 10_000_000 + b"]}")
    assert len(bomb) < CONFIG.max_batch_bytes
    resp = await client.post("/v1/batch", data=bomb, headers={**basic(KEY), "Content-Encoding": "gzip"})
    assert resp.status == 413


# -- rate limit and Kafka -------------------------------------------------------------------------

async def test_rate_limit_per_key_answers_429_with_retry_after(make):
    clock = Clock()
    client, pub = await make(CollectorConfig(write_keys=frozenset({KEY, "wk-other"}), rate_per_s=2, burst=3), clock=clock)
    assert (await post(client, "/v1/batch", {"batch": [ev(1), ev(2), ev(3)]}, basic(KEY)))[0] == 200
    status, body, headers = await post(client, "/v1/track", ev(4), basic(KEY))
    assert status == 429 and body["code"] == "rate_limited" and headers["Retry-After"] == "1"
    assert (await post(client, "/v1/track", ev(5), basic("wk-other")))[0] == 200  # another key has its own bucket
    clock.t = 0.5
    assert (await post(client, "/v1/track", ev(4), basic(KEY)))[0] == 200
    assert len(pub.records) == 5


async def test_kafka_unavailable_is_503_never_200(make):
    publisher = FakePublisher()
    publisher.error = "Kafka did not acknowledge within 10s"
    client, _ = await make(publisher=publisher)
    status, body, headers = await post(client, "/v1/track", ev(), basic(KEY))
    assert status == 503 and body["code"] == "unavailable" and headers["Retry-After"] == "1"


async def test_health_and_readiness(make):
    publisher = FakePublisher()
    publisher.ready = False
    client, _ = await make(publisher=publisher)
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json()) == {"status": "ok", "kafka": False}
    assert (await client.get("/readyz")).status == 503
    publisher.ready = True
    assert (await client.get("/readyz")).status == 200
