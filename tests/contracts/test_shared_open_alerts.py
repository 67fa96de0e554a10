"""The open alerts shared between workers (streams/demand/open_alerts.py) against a real Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

from redis.asyncio import Redis

from streams.demand.open_alerts import SharedOpenAlerts
from streams.observability.metrics import Metrics

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
H = 3_600_000


def _alert(state: str, key: str = "category:masks", measure: str = "orders", direction: str = "surge",
           end: str = "2026-01-05T01:00:00Z") -> dict[str, Any]:
    return {"state": state, "key": key, "measure": measure, "direction": direction, "bucket_end": end}


def _run(redis_url: str, body: Any) -> Any:
    async def main() -> Any:
        client = Redis.from_url(redis_url)
        try:
            return await body(client)
        finally:
            await client.aclose()
    return asyncio.run(main())


def test_transitions_are_shared_and_ended_alerts_leave(redis_url: str) -> None:
    ns = f"oa-{uuid.uuid4().hex[:10]}"

    async def body(client: Redis) -> list[Any]:
        writer = SharedOpenAlerts(client, ns, max_age_ms=4 * 24 * H)
        reader = SharedOpenAlerts(client, ns, max_age_ms=4 * 24 * H)  # another worker
        seen = []
        await writer.record([_alert("OPEN"), _alert("OPEN", "category:travel", "interest", "collapse")])
        seen.append(await reader.refresh(T0, force=True))
        await writer.record([_alert("ESCALATE", end="2026-01-05T05:00:00Z"), _alert("NEW_NORMAL", "category:travel", "interest")])
        seen.append(await reader.refresh(T0, force=True))
        await writer.record([_alert("RESOLVED")])
        seen.append(await reader.refresh(T0, force=True))
        seen.append(await client.exists(writer.key))
        return seen

    views = _run(redis_url, body)
    assert views[0] == {"orders/category:masks": "surge", "interest/category:travel": "collapse"}
    assert views[1] == {"orders/category:masks": "surge"}
    assert views[2] == {} and views[3] == 0


def test_a_field_whose_end_was_never_written_expires_in_event_time(redis_url: str) -> None:
    ns = f"oa-{uuid.uuid4().hex[:10]}"

    async def body(client: Redis) -> list[Any]:
        shared = SharedOpenAlerts(client, ns, max_age_ms=4 * 24 * H, refresh_s=3600.0)
        await shared.record([_alert("OPEN")])  # bucket end T0 + 1 h
        await client.hset(shared.key, "units/category:x", "sideways 12")  # not ours to parse: dropped
        out = [await shared.refresh(T0 + 3 * 24 * H), await client.hlen(shared.key)]
        out.append(await shared.refresh(T0 + 5 * 24 * H))  # within refresh_s: the view as read
        out.append(await shared.refresh(T0 + 5 * 24 * H, force=True))
        out.append(await client.hlen(shared.key))
        return out

    fresh, left, cached, later, after = _run(redis_url, body)
    assert fresh == {"orders/category:masks": "surge"} and left == 1
    assert cached == fresh
    assert later == {} and after == 0


def test_redis_down_is_counted_and_the_last_view_kept() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = Metrics()

    async def main() -> Any:
        client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        shared = SharedOpenAlerts(client, "down", max_age_ms=H, on_error=metrics.demand_shared_errors)
        shared.view = {"orders/category:masks": "surge"}
        await shared.record([_alert("OPEN")])
        view = await shared.refresh(T0, force=True)
        await client.aclose()
        return view

    assert asyncio.run(main()) == {"orders/category:masks": "surge"}
    assert metrics.registry.get_sample_value("touchpoint_demand_shared_alerts_errors_total") == 2
