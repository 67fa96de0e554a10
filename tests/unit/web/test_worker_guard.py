"""The worker's HTTP server refuses foreign Host headers (DNS rebinding) on every route and
cross-site browser requests on state-changing ones (CSRF), issue 21 Medium 3.

Before the fix, ``POST /identity/erase`` from a page on another origin erased a person (no token
by default) and any Host header was served. The Faust app is built in-process and its aiohttp
application served on loopback; Redis and Kafka point at closed ports, and no request that
passes the guard reaches them (each stops at 400 or 405 first).
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.app import create_app
from streams.settings import Settings

CLOSED = {"TOUCHPOINT_REDIS_URL": "redis://127.0.0.1:1/0", "TOUCHPOINT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


@pytest.fixture
async def worker_http():
    clients = []

    async def make(**env: str) -> TestClient:
        settings = Settings.from_env({"TOUCHPOINT_PII_KEY": "guard-test", "TOUCHPOINT_NAMESPACE": "guard", **CLOSED, **env})
        app, ctx = create_app(settings)
        app.web.init_server()
        client = TestClient(TestServer(app.web.web_app, host="127.0.0.1"))
        await client.start_server()
        clients.append((client, ctx))
        return client

    yield make
    for client, ctx in clients:
        await client.close()
        await ctx.redis.aclose()


ROUTES = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/profiles?id=user_id:1"),
          ("GET", "/identity/why?a=user_id:1&b=user_id:2"), ("POST", "/identity/erase?id=user_id:1"), ("GET", "/oncall"),
          ("GET", "/oncall/data")]


async def test_a_foreign_host_is_421_on_every_route(worker_http):
    client = await worker_http()
    for method, path in ROUTES:
        resp = await client.request(method, path, headers={"Host": "rebound.evil.example:6066"})
        assert resp.status == 421, (method, path, resp.status)
        assert "TOUCHPOINT_ALLOWED_HOSTS" in (await resp.json())["error"]


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost:6066"},
    {"Origin": "null"},
])
async def test_cross_site_erase_is_403(worker_http, headers):
    client = await worker_http()
    resp = await client.post("/identity/erase?id=user_id:victim", headers=headers)
    assert resp.status == 403, await resp.text()


async def test_clients_without_browser_headers_and_same_origin_pages_pass(worker_http):
    client = await worker_http()
    host = f"127.0.0.1:{client.port}"
    # the guard lets them through: the handler answers (400: no id), nothing reaches Redis
    for headers in ({}, {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}, {"Host": f"localhost:{client.port}"}):
        resp = await client.post("/identity/erase", headers=headers)
        assert resp.status == 400 and "missing query parameter id" in (await resp.json())["error"], headers
    assert (await client.get("/healthz")).status == 200


async def test_configured_and_advertised_names_are_served(worker_http):
    client = await worker_http(TOUCHPOINT_WEB_HOST="0.0.0.0", TOUCHPOINT_WEB_ADVERTISED_HOST="worker-2",
                               TOUCHPOINT_ALLOWED_HOSTS="cdp.internal", TOUCHPOINT_ALLOWED_ORIGINS="https://ops.example")
    for host in ("worker-2:6066", "cdp.internal", "10.1.2.3:6066"):
        assert (await client.get("/healthz", headers={"Host": host})).status == 200, host
    resp = await client.post("/identity/erase", headers={"Origin": "https://ops.example", "Sec-Fetch-Site": "cross-site"})
    assert resp.status == 400  # allowed origin: reaches the handler


async def test_star_turns_the_host_check_off(worker_http):
    client = await worker_http(TOUCHPOINT_ALLOWED_HOSTS="*")
    assert (await client.get("/healthz", headers={"Host": "anything.example"})).status == 200
