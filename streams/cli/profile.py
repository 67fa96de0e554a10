"""``touchpoint profile get``, ``touchpoint profiles dump`` and ``touchpoint lookup``.

``profile get`` and ``lookup`` ask a worker over HTTP (it routes to the owner of the profile and
hashes email/phone values itself, so raw values never need the PII key here); ``profiles dump``
reads the table's compacted changelog from the beginning, so it needs no worker at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from streams.kafka.reading import read_to_end
from streams.settings import Settings

__all__ = ["add_parser", "fetch", "dump_profiles"]

RETRY_FOR_S = 15.0  # 503 = a rebalance or recovery in progress: retry this long, then give up


def add_parser(sub: argparse._SubParsersAction) -> None:
    url_help = "worker HTTP base URL (default http://TOUCHPOINT_WEB_HOST:TOUCHPOINT_WEB_PORT)"
    p = sub.add_parser("profile", help="read one live profile")
    psub = p.add_subparsers(dest="profile_command", required=True, metavar="SUBCOMMAND")
    g = psub.add_parser("get", help="one profile as JSON, by any identifier or by profile id")
    which = g.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ident", metavar="TYPE:VALUE", help="any identifier, raw (e.g. email:Ann@Example.com)")
    which.add_argument("--profile-id", help="a profile id (a merged-away id answers with its survivor)")
    g.add_argument("--url", help=url_help)
    g.set_defaults(run=get)

    d = sub.add_parser("profiles", help="all live profiles")
    dsub = d.add_subparsers(dest="profiles_command", required=True, metavar="SUBCOMMAND")
    dump = dsub.add_parser("dump", help="every live profile as JSON lines (read from the table changelog)")
    dump.add_argument("--raw", action="store_true", help="print the stored value instead of the rendered profile")
    dump.set_defaults(run=dump_cmd)

    lk = sub.add_parser("lookup", help='TYPE:VALUE lines on stdin -> JSON lines {"id", "profile_id", "event_count"}')
    lk.add_argument("--url", help=url_help)
    lk.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    lk.set_defaults(run=lookup)


def base_url(settings: Settings, url: str | None) -> str:
    return (url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


def _headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.web_token}"} if settings.web_token else {}


async def fetch(client: aiohttp.ClientSession, url: str, settings: Settings) -> tuple[int, dict[str, Any]]:
    """GET ``url``; retries 503 (rebalance) and connection errors for up to RETRY_FOR_S."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            async with client.get(url, headers=_headers(settings)) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, body = 599, orjson.dumps({"error": f"worker unreachable at {url.split('/profiles')[0]}: {exc}"})
        if status not in (503, 599) or time.monotonic() > deadline:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = {"error": body[:200].decode(errors="replace")}
            return status, parsed
        await asyncio.sleep(0.5)


async def get(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.main import UsageError

    base = base_url(settings, args.url)
    url = f"{base}/profiles?id={quote(args.ident, safe='')}" if args.ident else f"{base}/profiles/{quote(args.profile_id, safe='')}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        status, body = await fetch(client, url, settings)
    if status == 200:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if status == 400:
        raise UsageError(body.get("error", "bad request"))
    print(f"touchpoint profile get: {body.get('error', f'HTTP {status}')}", file=sys.stderr)
    return 1


async def dump_profiles(settings: Settings) -> dict[bytes, bytes]:
    """The last value per key of the ``profiles`` changelog (tombstones included)."""
    from streams.profiles.agent import changelog_topic

    latest: dict[bytes, bytes] = {}
    async for record in read_to_end(settings, changelog_topic(settings.app_id), timeout_s=300):
        if record.key is None:
            continue
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = record.value
    return latest


async def dump_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from streams.profiles.profile import decode, is_tomb_bytes, render

    latest = await dump_profiles(settings)
    out = sys.stdout
    for key in sorted(latest):
        value = latest[key]
        if is_tomb_bytes(value):
            continue
        if args.raw:
            out.write(orjson.dumps({"profile_id": key.decode(), "value": decode(value)}).decode() + "\n")
        else:
            out.write(orjson.dumps(render(key.decode(), decode(value))).decode() + "\n")
    return 0


async def lookup(args: argparse.Namespace, settings: Settings) -> int:
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    base = base_url(settings, args.url)
    gate = asyncio.Semaphore(max(1, args.concurrency))
    failed = 0

    async def one(client: aiohttp.ClientSession, text: str) -> dict[str, Any]:
        nonlocal failed
        async with gate:
            status, body = await fetch(client, f"{base}/profiles?id={quote(text, safe='')}", settings)
        if status == 200:
            return {"id": text, "profile_id": body["profile_id"], "event_count": body["event_count"]}
        if status == 404:
            return {"id": text, "profile_id": None, "event_count": 0}
        failed += 1
        return {"id": text, "profile_id": None, "event_count": 0, "error": body.get("error", f"HTTP {status}")}

    connector = aiohttp.TCPConnector(limit=max(1, args.concurrency))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector) as client:
        results = await asyncio.gather(*(one(client, text) for text in lines))
    for row in results:
        sys.stdout.write(orjson.dumps(row).decode() + "\n")
    return 1 if failed else 0
