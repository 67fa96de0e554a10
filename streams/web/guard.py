"""Host and cross-origin checks shared by the worker's and the collector's HTTP servers.

- **Host** (DNS rebinding): a page on ``http://evil.example`` whose name is re-pointed at
  127.0.0.1 talks to our loopback server with ``Host: evil.example``. Every route answers only
  Host headers that are an IP address, ``localhost``, the server's own advertised name or a name
  in ``TOUCHPOINT_ALLOWED_HOSTS`` (``*`` turns the check off); others get **421**.
- **Cross-site requests** (CSRF): a state-changing request (any method but GET, HEAD, OPTIONS)
  that a browser marks as coming from another site (``Sec-Fetch-Site: cross-site|same-site``, or
  an ``Origin`` that is neither this server nor in ``TOUCHPOINT_ALLOWED_ORIGINS``) gets **403**.
  Browsers send ``Origin`` on every cross-origin POST, so a forged form or fetch cannot pass;
  SDKs, curl and our CLI send neither header and are not affected.

The checks are pure functions of the headers; :func:`middleware` applies them to an aiohttp app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

__all__ = ["HostPolicy", "middleware", "split_host"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def split_host(value: str) -> tuple[str, str]:
    """``(host, port)`` of a Host header or an origin's authority, host lower-cased, brackets removed.

    >>> split_host("LocalHost:6066"), split_host("[::1]:8088"), split_host("10.0.0.7")
    (('localhost', '6066'), ('::1', '8088'), ('10.0.0.7', ''))
    """
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if value.count(":") > 1:  # a bare IPv6 address
        return value, ""
    host, _, port = value.partition(":")
    return host.rstrip("."), port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class HostPolicy:
    """Which Host headers and browser origins one server accepts."""

    hosts: frozenset[str]
    origins: frozenset[str]
    any_host: bool = False

    @classmethod
    def build(cls, allowed_hosts: str, allowed_origins: str, own_hosts: Iterable[str] = ()) -> HostPolicy:
        """From the settings' comma-separated lists plus the server's own names (bind/advertised host)."""
        names = _split_list(allowed_hosts)
        hosts = {split_host(n)[0] for n in (*names, *own_hosts) if n and n != "*"}
        origins = frozenset(o.rstrip("/").lower() for o in _split_list(allowed_origins))
        return cls(frozenset(hosts - {"0.0.0.0", "::"}), origins, any_host="*" in names)

    def host_refusal(self, host_header: str | None) -> str | None:
        """Why the Host header is refused, or None.

        >>> p = HostPolicy.build("", "", ["worker-3"])
        >>> [p.host_refusal(h) for h in ("127.0.0.1:6066", "localhost", "worker-3:6066", "[::1]:1")]
        [None, None, None, None]
        >>> p.host_refusal("evil.example:6066")
        "Host 'evil.example' is not served here; add it to TOUCHPOINT_ALLOWED_HOSTS if it is yours"
        """
        if self.any_host:
            return None
        if not host_header:
            return "a Host header is required"
        host = split_host(host_header)[0]
        if _is_ip(host) or host in _LOCAL_NAMES or host in self.hosts:
            return None
        return f"Host {host[:100]!r} is not served here; add it to TOUCHPOINT_ALLOWED_HOSTS if it is yours"

    def cross_site_refusal(self, method: str, host_header: str | None, origin: str | None, fetch_site: str | None) -> str | None:
        """Why a browser's cross-site state-changing request is refused, or None.

        >>> p = HostPolicy.build("", "https://shop.example")
        >>> p.cross_site_refusal("POST", "127.0.0.1:6066", "https://evil.example", "cross-site") is not None
        True
        >>> [p.cross_site_refusal("POST", "127.0.0.1:6066", o, s) for o, s in
        ...  ((None, None), ("http://127.0.0.1:6066", "same-origin"), ("https://shop.example", "cross-site"))]
        [None, None, None]
        >>> p.cross_site_refusal("GET", "127.0.0.1:6066", "https://evil.example", "cross-site") is None
        True
        """
        if method.upper() in SAFE_METHODS:
            return None
        origin = origin.strip().rstrip("/").lower() if origin else None
        if origin is not None and origin in self.origins:
            return None
        if origin is not None:
            if origin == "null":
                return "requests from an opaque origin (Origin: null) may not change state"
            authority = origin.partition("://")[2]
            if not host_header or split_host(authority) != split_host(host_header):
                return f"cross-origin request from {origin[:100]!r} refused; allow it with TOUCHPOINT_ALLOWED_ORIGINS"
        if fetch_site is not None and fetch_site.strip().lower() in ("cross-site", "same-site"):
            return "cross-site request refused (Sec-Fetch-Site); allow its origin with TOUCHPOINT_ALLOWED_ORIGINS"
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(policy: HostPolicy, error: Callable[[int, str], web.StreamResponse] | None = None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """An aiohttp middleware answering 421 (Host) or 403 (cross-site) before any handler runs."""

    def default_error(status: int, message: str) -> web.StreamResponse:
        return web.json_response({"error": message}, status=status)

    answer = error or default_error

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        refused = policy.host_refusal(headers.get("Host"))
        if refused:
            return answer(421, refused)
        refused = policy.cross_site_refusal(request.method, headers.get("Host"), headers.get("Origin"), headers.get("Sec-Fetch-Site"))
        if refused:
            return answer(403, refused)
        return await handler(request)

    return guard
