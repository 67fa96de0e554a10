"""Answering an HTTP request on the worker that owns a key's table partition.

Profiles, customers and demand series live in Faust tables partitioned like their source topic;
only the worker actively owning a key's partition can read it. :class:`PartitionOwners` finds that
worker's canonical URL from Faust's assignor metadata and forwards the request there with the
bearer token and a hop counter (a merge chain or a moving partition adds hops; past the limit the
answer is 503, so requests never loop while ownership moves). The views keep only their own
reading and rendering.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson
from faust.web import Request, Response, View
from yarl import URL

from streams.kafka.delivery import tables_recovered
from streams.profiles.bundle import key_partition

__all__ = ["HOPS_HEADER", "SERVED_BY", "PartitionOwners"]

log = logging.getLogger(__name__)

HOPS_HEADER = "X-Touchpoint-Hops"
SERVED_BY = "X-Touchpoint-Served-By"  # canonical URL of the worker that read the table


class PartitionOwners:
    """Owner lookup and forwarding for one table (``table_name`` as registered with Faust)."""

    def __init__(self, app: Any, table: Any, table_name: str, partitions: int, *, max_hops: int = 4, what: str = "key") -> None:
        self.app = app
        self.table = table
        self.table_name = table_name
        self.partitions = partitions
        self.max_hops = max_hops
        self.what = what  # how errors name the thing: "profile", "series", ...
        self.me = URL(str(app.conf.canonical_url))
        self._client: aiohttp.ClientSession | None = None
        app.on_before_shutdown.connect(self._close)

    # ---------------------------------------------------------------- answers

    def json(self, view: View, body: Any, status: int = 200) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                          headers={SERVED_BY: str(self.me), "Cache-Control": "no-store"})

    def busy(self, hops: int = 0) -> str | None:
        """Why this worker cannot answer for its tables right now, or None."""
        if hops > self.max_hops:
            return f"{self.what} ownership is moving (rebalance); retry"
        if self.app.rebalancing or not tables_recovered(self.app):
            return "worker is rebalancing or recovering its tables; retry"
        return None

    # ---------------------------------------------------------------- ownership

    def all_owners(self) -> dict[URL, set[int]]:
        """Canonical URL -> partitions of this table it actively owns."""
        changelog = self.table.changelog_topic.get_topic_name()
        return {URL(url): set(topics.get(changelog, ())) for url, topics in self.app.router.table_metadata(self.table_name).items()}

    def owner(self, key: str) -> URL | None:
        """The worker actively owning ``key``'s partition, None if nobody does right now."""
        partition = key_partition(key.encode(), self.partitions)
        for url, parts in self.all_owners().items():
            if partition in parts:
                return url
        return None

    def is_me(self, url: URL) -> bool:
        return (url.host, url.port) == (self.me.host, self.me.port)

    def others(self) -> list[URL]:
        return [url for url in self.all_owners() if not self.is_me(url)]

    # ---------------------------------------------------------------- forwarding

    @staticmethod
    def hops_of(request: Request) -> int:
        try:
            return int(request.headers.get(HOPS_HEADER, "0"))
        except ValueError:
            return 0

    def forward_headers(self, request: Request, hops: int) -> dict[str, str]:
        out = {HOPS_HEADER: str(hops + 1)}
        if "Authorization" in request.headers:
            out["Authorization"] = request.headers["Authorization"]
        return out

    def client(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._client

    async def forward(self, view: View, request: Request, url: URL, path: str, hops: int,
                      query: dict[str, str] | None = None) -> Response:
        """The owner's answer to ``GET path``, passed through; 503 if the owner is unreachable."""
        target = url.with_path(path)
        if query:
            target = target.with_query(query)
        try:
            async with self.client().get(target, headers=self.forward_headers(request, hops)) as resp:
                return view.bytes(await resp.read(), content_type="application/json", status=resp.status,
                                  headers={SERVED_BY: resp.headers.get(SERVED_BY, str(url))})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s: owner %s of %s unreachable: %s", self.table_name, url, path, exc)
            return self.json(view, {"error": f"the worker owning this {self.what} is unreachable; retry"}, 503)

    async def route(self, view: View, request: Request, key: str, path: str, hops: int,
                    query: dict[str, str] | None = None) -> Response | None:
        """None when this worker owns ``key`` and may read it now; otherwise the answer to send:
        503 while rebalancing or while nobody owns the key, or the owner's answer to ``path``."""
        if (reason := self.busy(hops)) is not None:
            return self.json(view, {"error": reason}, 503)
        url = self.owner(key)
        if url is None:
            return self.json(view, {"error": f"no worker owns this {self.what}'s partition right now; retry"}, 503)
        if not self.is_me(url):
            return await self.forward(view, request, url, path, hops, query)
        return None

    async def get_json(self, url: URL, path: str, request: Request, query: dict[str, str] | None = None) -> Any:
        """Another worker's JSON answer (raises on a non-200 answer or a network error)."""
        target = url.with_path(path).with_query(query or {})
        async with self.client().get(target, headers=self.forward_headers(request, self.hops_of(request))) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{url} answered {resp.status}")
            return orjson.loads(await resp.read())

    async def _close(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
