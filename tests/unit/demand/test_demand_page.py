"""The /demand page in a real headless Chromium, against the same JSON the worker serves.

A small aiohttp server (no Kafka) serves the page's static files and answers ``demand/keys`` and
``demand/forecast`` with :mod:`streams.web.demand_api` over a key fed like the stage feeds it
(a short surge that resolved, a few that became the new normal, a drop still open). The page's
DOM after its scripts ran must show the history, the baseline, the forecast with both bands and
the shifts; a screenshot is written for humans (``demand.png`` in the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from aiohttp import web

from streams.web.demand_api import forecast_body, keys_body, parse_forecast_query, series_key
from tests.integration.test_observability import DomText
from tests.unit.observability.test_deploy import tool

from .test_foresight import demo_state

STATIC = Path(__file__).resolve().parents[3] / "streams" / "web" / "static"


def serve(entries: dict, fs) -> tuple[str, callable]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "demand.html").read_bytes(), content_type="text/html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        if name == "keys":
            return web.json_response({"keys": keys_body(entries.items(), fs)})
        if name == "forecast":
            try:
                key, measure, horizon = parse_forecast_query(request.query, fs.max_horizon, ("units", "orders"))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            status, body = forecast_body(key, measure, horizon, entries.get(series_key(key, measure)), fs)
            return web.json_response(body, status=status)
        kind = "application/javascript" if name.endswith(".js") else "text/css"
        return web.Response(body=(STATIC / name).read_bytes(), content_type=kind)

    app = web.Application()
    app.router.add_get("/demand", page)
    app.router.add_get("/demand/{asset}", asset)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop


def render(url: str, profile: Path, shot: Path) -> DomText:
    chromium = tool("chromium")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
              f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1240,1000"]
    dump = subprocess.run([*common, "--dump-dom", url], capture_output=True, timeout=90)
    assert dump.returncode == 0, dump.stderr.decode()[-2000:]
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=90)
    dom = DomText()
    dom.feed(dump.stdout.decode())
    return dom


@pytest.fixture(scope="module")
def site():
    fs, state, _, during = demo_state()
    entries = {"units/category:masks": {"fc": during, "mon": {"lifecycle": {"alert_id": "x"}}},
               "orders/category:masks": {"fc": state, "mon": {"lifecycle": {}}},
               "units/category:travel": {"fc": state, "mon": {"lifecycle": {}}}}
    url, stop = serve(entries, fs)
    yield url, entries, fs
    stop()


def test_page_renders_history_baseline_forecast_and_shifts(site, tmp_path: Path) -> None:
    url, entries, fs = site
    shot = tmp_path / "demand.png"
    dom = render(url + "/demand#key=category:masks&measure=units", tmp_path / "chromium", shot)
    text = " ".join(dom.text)
    assert dom.find("body", data_loaded="true"), text[:500]
    [status] = dom.find("div", id="status")
    assert status["data-state"] == "ok", text[:500]
    series = {a["data-series"]: int(a["data-n"]) for t, a in dom.elements if t == "polyline" and "data-series" in a}
    state = entries["units/category:masks"]["fc"]
    assert series["history"] == min(len(state["h"]), 168) == 168  # the last week is drawn
    assert series["baseline"] >= 160
    assert series["forecast"] == 48
    assert series["if-shift-holds"] == 48  # a drop is open: "if it holds" is drawn too
    bands = {a["data-band"]: int(a["data-n"]) for t, a in dom.elements if t == "polygon"}
    assert bands == {"80": 48, "95": 48}
    shifts = dom.find("tr", **{"class": "shift"})
    assert len(shifts) == len(state["sh"]) >= 3
    states = {s["data-state"] for s in shifts}
    assert states == {s["state"] for s in state["sh"]} and {"OPEN", "RESOLVED"} <= states
    words = {"OPEN": "still going", "RESOLVED": "back to normal", "NEW_NORMAL": "became the new normal"}
    assert all(words[s] in text for s in states)
    assert "unusual drop right now" in text
    rects = [a for t, a in dom.elements if t == "rect" and "shift" in a.get("class", "")]
    assert rects and any(r["data-state"] == "OPEN" for r in rects)
    keys = [a["value"] for t, a in dom.elements if t == "option" and a.get("value", "").startswith("category:")]
    assert keys == ["category:masks", "category:travel"]
    measures = [a["value"] for t, a in dom.elements if t == "option" and a.get("value") in ("units", "orders")]
    assert measures == ["orders", "units"]  # the measures of the chosen key
    assert shot.exists() and shot.stat().st_size > 20_000
    keep = Path.cwd() / ".ci" / "out"
    if keep.is_dir():  # CI keeps its artifacts here
        shutil.copy(shot, keep / "demand.png")


def test_bad_query_parameters_answer_400_with_the_reason(site) -> None:
    import json
    import urllib.error
    import urllib.request

    url, _, _ = site
    cases = {"": "missing query parameter key", "key=masks": "DIMENSION:VALUE", "key=category:masks&measure=bogus": "unknown measure",
             "key=category:masks&measure=revenue": "unknown measure",
             "key=category:masks&horizon=0": "between 1 and 168", "key=category:masks&horizon=x": "whole number",
             "key=category:masks&horizon=169": "between 1 and 168", "key=category:masks&colour=red": "unknown query parameter"}
    for query, needle in cases.items():
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}/demand/forecast?{query}", timeout=10)
        assert info.value.code == 400
        assert needle in json.loads(info.value.read())["error"], query
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{url}/demand/forecast?key=category:unknown", timeout=10)
    assert info.value.code == 404
