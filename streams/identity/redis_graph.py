"""The identity graph in Redis: each event resolved atomically by Lua, one pipelined round trip per batch.

A batch goes out as one write of ``EVALSHA resolve.lua`` calls, each resolving a run of up to
``events_per_call`` consecutive events in order, exactly as one call per event would (same replies,
same writes; see the script's header). NOSCRIPT fails a whole call before it runs, so the re-send
after a script-cache flush repeats exactly the events of the failed calls.

Key layout: streams/identity/keys.py (the one place that names the keys, for this module and the scripts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from streams.identity.dedup_window import SLICES, slice_seconds
from streams.identity.dedup_window import digest as window_digest
from streams.identity.explain import Side, explain
from streams.identity.keys import Keys, lua_source
from streams.identity.memory_graph import finish_resolution, sort_identifiers
from streams.identity.model import (
    ErasureResult,
    Identifier,
    Resolution,
    ResolveRequest,
    SplitResult,
    fmt,
    provenance_path,
    seq_of,
)
from streams.identity.rules import IdentityRules
from streams.identity.split import SplitError
from streams.settings import Settings

__all__ = ["RedisIdentityGraph", "IdentityGraphError", "EVENTS_PER_CALL"]

# Events resolved per EVALSHA call (see RedisIdentityGraph).
EVENTS_PER_CALL = 50
# Dedup defaults: the settings' own (TOUCHPOINT_DEDUP_TTL_S, _WINDOW_S, _SHARD_BITS), read from
# them so the two cannot drift.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
DEDUP_TTL_S, DEDUP_WINDOW_S, DEDUP_SHARD_BITS = (int(_DEFAULTS[n]) for n in ("dedup_ttl_s", "dedup_window_s", "dedup_shard_bits"))


# Commands of the identity scripts that a Redis ACL user confined to the usual categories may lack
# (TIME, read by resolve.lua for the dedup window's slices, is in no category but @fast).
_PERMISSION_PROBE = "redis.call('TIME'); redis.call('HLEN', KEYS[1]); redis.call('EXISTS', KEYS[1]); return 1"


async def script_permission_problem(redis: Redis, namespace: str) -> str | None:
    """Why Redis's ACL would refuse the identity scripts' commands to this connection's user, or
    ``None`` (also when Redis cannot be reached now: the worker's outage handling covers that)."""
    try:
        await redis.eval(_PERMISSION_PROBE, 1, f"{namespace}:permission-probe")
    except ResponseError as exc:
        text = str(exc)
        return text if ("NOPERM" in text or "can't run" in text or "no permissions" in text) else None
    except (RedisError, OSError):
        return None
    return None


class IdentityGraphError(RuntimeError):
    """A Lua call failed for a reason other than a missing script (a bug or a Redis fault)."""


def _lua(name: str) -> str:
    """A script's source with the key layout of streams/identity/keys.py filled in."""
    return lua_source(resources.files("streams.identity").joinpath("lua", name).read_text(encoding="utf-8"))


def _s(x: Any) -> Any:
    return x.decode() if isinstance(x, bytes) else x


class RedisIdentityGraph:
    """Async identity graph on Redis; semantics identical to :class:`MemoryIdentityGraph`.

    Several workers may share one Redis and namespace: every event is resolved atomically, so
    concurrent batches interleave between runs of events and still give the same components
    (invariant 3).
    Works with ``decode_responses`` on or off.

    A batch is sent as one pipelined write of ``EVALSHA resolve.lua`` calls, each resolving a run
    of up to ``events_per_call`` consecutive events one after the other (the replies and writes
    are those of one call per event; a run is atomic as a whole). Larger runs cost Redis less CPU
    per event (the call, its rule tables and functions are set up once per run); a run blocks
    other Redis clients for its whole duration (tens of microseconds per event).
    """

    def __init__(self, redis: Redis, namespace: str, rules: IdentityRules, dedup_ttl_s: int = DEDUP_TTL_S,
                 events_per_call: int = EVENTS_PER_CALL, *, dedup_window_s: int = DEDUP_WINDOW_S,
                 dedup_shard_bits: int = DEDUP_SHARD_BITS, resolve_lua: str | None = None) -> None:
        """``resolve_lua``: another text of resolve.lua (with its ``__KEYS__`` line), for benchmarks
        comparing two versions of the script on the same Redis (touchpoint_tools/bench/identity_bench.py)."""
        if dedup_ttl_s <= 0 or dedup_window_s <= 0:
            raise ValueError("dedup_ttl_s and dedup_window_s must be > 0")
        if not 0 <= dedup_shard_bits <= 32:
            raise ValueError("dedup_shard_bits must be between 0 and 32")
        self._shard_bits = dedup_shard_bits
        self.dedup_window_s = dedup_window_s
        if events_per_call <= 0:
            raise ValueError("events_per_call must be > 0")
        self._per_call = events_per_call
        self.redis = redis
        self.rules = rules
        self.prefix = namespace + ":"
        self.keys = Keys(namespace)
        self._ttl = str(dedup_ttl_s)
        # The rule numbers are compiled into the script text: one rule set = one script SHA.
        resolve = _lua("resolve.lua") if resolve_lua is None else lua_source(resolve_lua)
        self._resolve_src = resolve.replace("__RULES__", rules.lua_config())
        self._erase_src = _lua("erase.lua")
        self._split_src = _lua("split.lua")
        self._split_sha = hashlib.sha1(self._split_src.encode()).hexdigest()
        self._resolve_sha = hashlib.sha1(self._resolve_src.encode()).hexdigest()
        self._erase_sha = hashlib.sha1(self._erase_src.encode()).hexdigest()
        self._loaded = False
        # Constant RESP fragments of every resolve call (see _run).
        self._dedup_prefix = self.keys.dedup("").encode()
        self._dedup_len = len(self._dedup_prefix)
        self._head = b"$7\r\nEVALSHA\r\n$40\r\n%b\r\n" % self._resolve_sha.encode()
        self._mid = b"".join(b"$%d\r\n%b\r\n" % (len(x), x) for x in (
            self.prefix.encode(), self._ttl.encode(), str(slice_seconds(dedup_window_s)).encode(), str(SLICES).encode()))

    async def load_scripts(self) -> None:
        """SCRIPT LOAD both scripts (done on first use and after a NOSCRIPT, e.g. a Redis restart)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.script_load(self._resolve_src)
        pipe.script_load(self._erase_src)
        pipe.script_load(self._split_src)
        await pipe.execute()
        self._loaded = True

    # -- resolution -------------------------------------------------------------------------

    async def resolve_batch(self, requests: Sequence[ResolveRequest]) -> list[Resolution]:
        """Dedup + resolve every request, in order, in ONE pipelined round trip (runs of
        ``events_per_call`` requests per EVALSHA)."""
        if not requests:
            return []
        if not self._loaded:
            await self.load_scripts()
        prep = self.rules.prepare
        prepared = [prep(r.identifiers) for r in requests]
        replies = await self._run(requests, prepared, range(len(requests)))
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Script cache flushed under us: reload and re-send only the failed calls, in order;
            # none of them ran, and the ones that did are untouched.
            await self.load_scripts()
            for i, r in zip(missing, await self._run(requests, prepared, missing), strict=True):
                replies[i] = r
        return [self._decode(req, blocked, reply)
                for req, (_, blocked), reply in zip(requests, prepared, replies, strict=True)]

    async def _run(self, requests: Sequence[ResolveRequest], prepared: list[tuple[list[Identifier], list[Identifier]]],
                   indices: Sequence[int]) -> list[Any]:
        """Send the requests as EVALSHA calls of up to ``events_per_call`` events each, in one packed
        write, and read every reply: one per request, in order (an error of a whole call, e.g. a
        NOSCRIPT, is the reply of each of its requests: none of them ran)."""
        # RESP is packed here rather than by redis-py's pipeline: the generic packer costs more
        # worker CPU than the whole rest of resolution (touchpoint_tools/bench/identity_bench.py).
        # One call: EVALSHA sha <k> <dedup key>*k ns ttl slice_s slices
        # then per event: claim ts n shard field (type value)*n
        head, mid, dprefix, dlen, bits = self._head, self._mid, self._dedup_prefix, self._dedup_len, self._shard_bits
        parts: list[bytes] = []
        add = parts.append
        sizes: list[int] = []
        step = self._per_call
        for start in range(0, len(indices), step):
            run = indices[start:start + step]
            k = len(run)
            sizes.append(k)
            keys: list[bytes] = []
            args: list[bytes] = []
            argn = 0
            for i in run:
                req = requests[i]
                linkable = prepared[i][0]
                key = req.message_id.encode()
                claim = req.claim.encode()
                ts = str(req.ts_ms).encode()
                n = str(len(linkable)).encode()
                shard, field = window_digest(req.message_id, bits)
                sb = str(shard).encode()
                keys.append(b"$%d\r\n%b%b\r\n" % (dlen + len(key), dprefix, key))
                args.append(b"$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
                            % (len(claim), claim, len(ts), ts, len(n), n, len(sb), sb, len(field), field))
                for t, v in linkable:
                    tb, vb = t.encode(), v.encode()
                    args.append(b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(tb), tb, len(vb), vb))
                argn += 5 + 2 * len(linkable)
            kb = str(k).encode()
            add(b"*%d\r\n" % (7 + k + argn))
            add(head)
            add(b"$%d\r\n%b\r\n" % (len(kb), kb))
            parts.extend(keys)
            add(mid)
            parts.extend(args)
        out: list[Any] = []
        for k, reply in zip(sizes, await self._round_trip(b"".join(parts), len(sizes), len(indices)), strict=True):
            if isinstance(reply, Exception):
                out.extend([reply] * k)
            elif not isinstance(reply, list) or len(reply) != k:
                raise IdentityGraphError(f"resolve.lua returned {len(reply) if isinstance(reply, list) else reply!r}"
                                         f" replies for {k} events")
            else:
                out.extend(reply)
        return out

    async def _round_trip(self, packed: bytes, n: int, events: int) -> list[Any]:
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(packed)
            out: list[Any] = []
            # One timer for the whole batch instead of one per reply (a timer per reply costs
            # more worker CPU than decoding it); math.inf = no per-read timeout in redis-py.
            async with asyncio.timeout(conn.socket_timeout and conn.socket_timeout + 0.002 * events):
                for _ in range(n):
                    try:
                        out.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:  # per-call errors (NOSCRIPT, script bugs) are replies
                        out.append(exc)
            return out
        except BaseException:
            # Replies may still be in flight: never hand this socket back in an unknown state.
            # Scripts that ran are safe to run again (same claim = redelivery, invariant 2).
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    def _decode(self, req: ResolveRequest, blocked: list[Identifier], reply: Any) -> Resolution:
        if isinstance(reply, Exception):
            raise IdentityGraphError(f"resolving message {req.message_id!r} failed: {reply}") from reply
        head = _s(reply[0])
        if head == "duplicate":
            return Resolution("duplicate", None)
        if head == "=":  # redelivery of a non-trivial resolution: replay what it reported
            outcome, pid, body = _s(reply[1]).split("\x1f", 2)
            return self._finish(req, blocked, outcome, pid or None, body, reply[2] if len(reply) > 2 else None)
        pid = reply[1]
        return self._finish(req, blocked, head, _s(pid) if pid else None, reply[2], reply[3] if len(reply) > 3 else None)

    def _finish(self, req: ResolveRequest, blocked: list[Identifier], outcome: str, pid: str | None, body: Any,
                skip: Any) -> Resolution:
        skipped = _s(skip).split("\x1f") if skip else ()
        if not body:
            if not blocked and not skipped:
                return Resolution(outcome, pid) if outcome != "erased" else Resolution("erased", None)
            return finish_resolution(req, blocked, self.rules, outcome, pid, (), (), skipped)
        d = orjson.loads(body)
        merged = d["m"] or ()  # cjson writes an empty array as {}
        changes = d["c"] or ()
        return finish_resolution(req, blocked, self.rules, outcome, pid, merged, changes, skipped)

    # -- reads --------------------------------------------------------------------------------

    async def lookup(self, ident: Identifier) -> str | None:
        """Current profile id of an identifier (always the live survivor), or None."""
        return _s(await self.redis.get(self.keys.id(fmt(ident))))

    async def current_profile(self, profile_id: str) -> str | None:
        """The live profile a (possibly merged-away) profile id now lives in, or None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self.keys.meta(profile_id))
        pipe.get(self.keys.fwd(profile_id))
        live, fwd = await pipe.execute()
        return profile_id if live else _s(fwd)

    async def identifiers_of(self, profile_id: str) -> list[Identifier]:
        """Identifiers of the (forwarded) profile, sorted by priority then value."""
        cur = await self.current_profile(profile_id)
        if cur is None:
            return []
        keys = await self.redis.hkeys(self.keys.links(cur))
        return sort_identifiers(self.rules, (_s(k) for k in keys))

    async def merged_into(self, profile_id: str) -> list[str]:
        """Every profile id ever forwarded to the live ``profile_id`` (``pl:``), sorted."""
        return sorted((_s(x) for x in await self.redis.smembers(self.keys.merged(profile_id))), key=seq_of)

    async def why(self, a: Identifier, b: Identifier) -> list[dict[str, Any]] | None:
        """Chain of links (message id and rule per link) joining two identifiers, or None."""
        for _ in range(3):  # a merge between the reads moves the profile: read again
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.keys.id(fmt(a)))
            pipe.get(self.keys.id(fmt(b)))
            pa, pb = (_s(x) for x in await pipe.execute())
            if pa is None or pa != pb:
                return None
            pipe = self.redis.pipeline(transaction=True)
            pipe.hgetall(self.keys.links(pa))
            pipe.lrange(self.keys.bridges(pa), 0, -1)
            pipe.get(self.keys.id(fmt(a)))
            links, edges, again = await pipe.execute()
            if _s(again) == pa:
                return provenance_path({_s(k): _s(v) for k, v in links.items()}, [_s(e) for e in edges], fmt(a), fmt(b))
        return None

    async def explain(self, a: Identifier, b: Identifier) -> dict[str, Any]:
        """Why ``a`` and ``b`` are or are not one person (see :mod:`streams.identity.explain`)."""
        chain = await self.why(a, b)

        async def side(i: Identifier) -> Side:
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.keys.id(fmt(i)))
            pipe.get(self.keys.quar(fmt(i)))
            pid, quar = (_s(x) for x in await pipe.execute())
            meta = {_s(k): _s(v) for k, v in (await self.redis.hgetall(self.keys.meta(pid))).items()} if pid else {}
            counts = {k[2:]: int(v) for k, v in meta.items() if k.startswith("n:")}
            uniq = {k[2:]: v for k, v in meta.items() if k.startswith("u:")}
            tags = {k[2:]: v for k, v in meta.items() if k.startswith("s:")}
            return Side(i, pid, quar, counts, uniq, tags)

        return explain(self.rules, await side(a), await side(b), chain)

    # -- erasure ------------------------------------------------------------------------------

    async def erase(self, ident: Identifier, at_ms: int | None = None) -> ErasureResult:
        """Remove the whole component of ``ident`` and suppress all its identifiers (invariant 5);
        ``at_ms``, the erasure time, is kept in the suppression entries (the way back: only events
        after it can be readmitted)."""
        if self.rules.is_blocked(ident):
            return ErasureResult(None, (), (), refused="blocked_value")
        if not self._loaded:
            await self.load_scripts()
        args = (self._erase_sha, 0, self.prefix, fmt(ident), *((str(at_ms),) if at_ms is not None else ()))
        try:
            pid, idents, losers = await self.redis.evalsha(*args)
        except NoScriptError:
            await self.load_scripts()
            pid, idents, losers = await self.redis.evalsha(*args)
        pid = _s(pid) if pid else None
        ids = [pid] if pid else []
        return ErasureResult(pid, tuple(ids + sorted((_s(x) for x in losers), key=seq_of)),
                             tuple(sort_identifiers(self.rules, (_s(x) for x in idents))))

    # -- split --------------------------------------------------------------------------------

    async def split(self, ts_ms: int, *, cut: tuple[Identifier, Identifier] | None = None,
                    detach: Identifier | None = None) -> SplitResult:
        """Cut one recorded link (or merge bridge) or detach one identifier, atomically
        (lua/split.lua; streams/identity/split.py); raises :class:`SplitError` when that cannot be done."""
        if (cut is None) == (detach is None):
            raise ValueError("give exactly one of cut or detach")
        if not self._loaded:
            await self.load_scripts()
        a, b = (fmt(cut[0]), fmt(cut[1])) if cut is not None else (fmt(detach), "")  # type: ignore[arg-type]
        args = (self._split_sha, 0, self.prefix, "cut" if cut is not None else "detach", a, b, str(ts_ms))
        try:
            reply = await self.redis.evalsha(*args)
        except NoScriptError:
            await self.load_scripts()
            reply = await self.redis.evalsha(*args)
        if _s(reply[0]) != "ok":
            raise SplitError(_s(reply[1]))
        return SplitResult(_s(reply[1]), _s(reply[2]), tuple(_s(x) for x in reply[3] or ()), int(reply[4]))
