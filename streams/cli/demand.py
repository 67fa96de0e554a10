"""``touchpoint demand keys`` and ``touchpoint demand forecast``: the live demand series of a
running worker (which routes a forecast to the worker owning the key, like profile lookups)."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlencode

import aiohttp
import orjson

from streams.settings import Settings

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    url_help = "worker HTTP base URL (default http://TOUCHPOINT_WEB_HOST:TOUCHPOINT_WEB_PORT)"
    p = sub.add_parser("demand", help="live demand series: keys and forecasts (from a running worker)")
    psub = p.add_subparsers(dest="demand_command", required=True, metavar="SUBCOMMAND")
    k = psub.add_parser("keys", help="every series (key, measure) with its shift state and last values, as JSON lines")
    k.add_argument("--url", help=url_help)
    k.set_defaults(run=keys)
    f = psub.add_parser("forecast", help="forecast of one series: timestamp,forecast,lo80,hi80,lo95,hi95")
    f.add_argument("--key", required=True, help="a dimension key, e.g. category:masks")
    f.add_argument("--measure", help="orders, units, revenue or interest (default: the worker's first measure)")
    f.add_argument("--horizon", default="48", help="hours ahead (1..168, default 48)")
    f.add_argument("--json", action="store_true", help="print the whole answer (history, shifts) as JSON")
    f.add_argument("--url", help=url_help)
    f.set_defaults(run=forecast)


def _fail(status: int, body: dict, command: str) -> int:
    from streams.cli.errors import UsageError

    if status == 400:
        raise UsageError(body.get("error", "bad request"))
    print(f"touchpoint demand {command}: {body.get('error', f'HTTP {status}')}", file=sys.stderr)
    return 1


async def keys(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.profile import base_url, fetch

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as client:
        status, body = await fetch(client, f"{base_url(settings, args.url)}/demand/keys", settings)
    if status != 200:
        return _fail(status, body, "keys")
    for row in body["keys"]:
        sys.stdout.write(orjson.dumps(row).decode() + "\n")
    if body.get("partial"):
        print(f"touchpoint demand keys: some workers did not answer: {'; '.join(body['partial'])}", file=sys.stderr)
        return 1
    return 0


async def forecast(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError
    from streams.cli.profile import base_url, fetch

    try:
        horizon = int(args.horizon)
    except ValueError:
        raise UsageError(f"--horizon must be a whole number of hours, got {args.horizon!r}") from None
    if horizon < 1:
        raise UsageError(f"--horizon must be at least 1, got {horizon}")
    query = {"key": args.key, "horizon": str(horizon)}
    if args.measure:
        query["measure"] = args.measure
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as client:
        status, body = await fetch(client, f"{base_url(settings, args.url)}/demand/forecast?{urlencode(query)}", settings)
    if status != 200:
        return _fail(status, body, "forecast")
    if args.json:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    out = sys.stdout
    if body.get("shift_open"):
        shift = body["shift_open"]
        print(f"# {body['key']} {body['measure']}: a {shift['direction']} is open "
              f"(observed/expected so far {shift['ratio_so_far']})", file=sys.stderr)
    out.write("timestamp,forecast,lo80,hi80,lo95,hi95\n")
    for row in body["forecast"]:
        out.write(",".join(str(x) for x in row) + "\n")
    return 0
