"""Demand forecasts live, through Kafka, with two workers: /demand/keys lists every series of the
fleet, /demand/forecast answers on either worker (routed to the key's owner), OPEN alerts carry the
next day if the shift holds, the CLI answers, and the /demand page renders the data in headless
Chromium (screenshot ``demand-live.png`` in the test's tmp dir).

The traffic is the four weeks of the demand e2e scenario (hourly buckets, a x5 surge of masks in
hubei that resolves, a collapse that becomes the new normal, ...): ``tests/unit/demand/scenario.py``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import orjson
import pytest

from streams.cli.send import publish
from streams.kafka.reading import read_to_end
from streams.kafka.topics import ALERTS, INPUT, ensure_topics
from tests.fixtures.stack import free_port, run_cli
from tests.integration.test_observability import render
from tests.unit.demand.scenario import traffic

pytestmark = pytest.mark.integration

MASKS = "category_region:masks|hubei"


def test_forecasts_answer_live_on_every_worker(settings, start_worker, tmp_path) -> None:
    settings = settings.with_(demand_bucket_s=3600, demand_lateness_s=3600, demand_timezone="UTC")
    events = traffic()
    w1 = start_worker(settings)
    w2 = start_worker(settings.with_(web_port=free_port()))
    w1.wait_ready()

    async def send() -> None:
        await ensure_topics(settings)
        await publish(settings, settings.topic(INPUT), (orjson.dumps(e) for e in events), (b"demo" for _ in events))

    asyncio.run(send())
    idle = run_cli(settings, "wait-idle", "--timeout", "200", timeout_s=220)
    assert idle.returncode == 0, idle.stderr.decode() + w1.log_tail() + w2.log_tail()

    async def collect() -> list[dict[str, Any]]:
        return [orjson.loads(r.value) async for r in read_to_end(settings, settings.topic(ALERTS))]

    alerts = asyncio.run(collect())
    opened = [a for a in alerts if a["state"] == "OPEN"]
    assert opened, w1.log_tail()
    assert all("forecast" in a for a in opened), [a["key"] for a in opened if "forecast" not in a]
    masks = next(a for a in opened if a["key"] == MASKS and a["direction"] == "surge")
    assert len(masks["forecast"]["points"]) == 24 and masks["forecast"]["ratio"] > 2

    # Every series of the fleet, from either worker.
    lists = [orjson.loads(w.get("/demand/keys", timeout=15)[1]) for w in (w1, w2)]
    assert lists[0]["keys"] == lists[1]["keys"] and len(lists[0]["workers"]) == 2, lists[0].get("partial")
    keys = {(r["key"], r["measure"]) for r in lists[0]["keys"]}
    assert (MASKS, "interest") in keys and len(keys) >= 4
    monitored = [r for r in lists[0]["keys"] if r["monitored"]]
    assert monitored and all(r["last_value"] is not None and r["steps"] > 24 * 7 - 3 for r in monitored)

    # A forecast on either worker is the owner's answer.
    for row in monitored[:6]:
        q = urllib.parse.urlencode({"key": row["key"], "measure": row["measure"], "horizon": 48})
        answers = [w.get(f"/demand/forecast?{q}", timeout=15) for w in (w1, w2)]
        assert [a[0] for a in answers] == [200, 200], answers
        bodies = [orjson.loads(a[1]) for a in answers]
        assert bodies[0] == bodies[1] and len(bodies[0]["forecast"]) == 48 and bodies[0]["history"]
        for p in bodies[0]["forecast"]:
            assert p[4] <= p[2] <= p[1] <= p[3] <= p[5] and p[4] >= 0
    bad = {"key=masks": "DIMENSION:VALUE", f"key={urllib.parse.quote(MASKS)}&measure=weight": "unknown measure",
           f"key={urllib.parse.quote(MASKS)}&measure=interest&horizon=999": "between 1 and 168", "": "missing"}
    for query, needle in bad.items():
        status, body = w2.get(f"/demand/forecast?{query}")
        assert status == 400 and needle in orjson.loads(body)["error"], (query, body)
    assert w1.get("/demand/forecast?key=category:nothing&measure=interest")[0] == 404

    # The CLI.
    got = run_cli(settings, "demand", "keys")
    assert got.returncode == 0, got.stderr.decode()
    assert {(orjson.loads(x)["key"], orjson.loads(x)["measure"]) for x in got.stdout.splitlines()} == keys
    fc = run_cli(settings, "demand", "forecast", "--key", MASKS, "--measure", "interest", "--horizon", "24")
    assert fc.returncode == 0, fc.stderr.decode()
    rows = fc.stdout.decode().splitlines()
    assert rows[0] == "timestamp,forecast,lo80,hi80,lo95,hi95" and len(rows) == 25
    assert run_cli(settings, "demand", "forecast", "--key", MASKS, "--measure", "weight").returncode == 2

    # The page, in a real browser, from the worker.
    url = w2.url + "/demand#key=" + urllib.parse.quote(MASKS) + "&measure=interest"
    dom = render(url, tmp_path / "chromium", tmp_path / "demand-live.png")
    text = " ".join(dom.text)
    assert dom.find("body", data_loaded="true"), text[:400]
    series = {a["data-series"]: int(a["data-n"]) for t, a in dom.elements if t == "polyline" and "data-series" in a}
    assert series["history"] >= 100 and series["baseline"] >= 100 and series["forecast"] == 48
    assert {a["data-band"] for t, a in dom.elements if t == "polygon"} == {"80", "95"}
    assert (tmp_path / "demand-live.png").stat().st_size > 20_000
