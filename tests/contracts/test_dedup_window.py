"""The two dedup tiers of resolve.lua against a real Redis: the replay tier (``dedup:``/``dres:``,
TTL ``dedup_ttl_s``) and the window tier (``dw:<slice>:<shard>`` hashes, ``dedup_window_s``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from streams.identity import IdentityRules, RedisIdentityGraph, ResolveRequest
from streams.identity import dedup_window as W
from streams.identity.keys import Keys


class Graph:
    def __init__(self, url: str, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = Redis.from_url(url)
        self.ns = f"dw-{uuid.uuid4().hex[:10]}"
        self.keys = Keys(self.ns)
        self.graph = RedisIdentityGraph(self.client, self.ns, IdentityRules(), **kw)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def outcomes(self, *reqs: ResolveRequest) -> list[str]:
        return [r.outcome for r in self.run(self.graph.resolve_batch(reqs))]

    def window_keys(self) -> list[bytes]:
        async def scan() -> list[bytes]:
            return [k async for k in self.client.scan_iter(match=self.keys.prefix + "dw:*")]
        return self.run(scan())

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()


@pytest.fixture
def graph_of(redis_url: str) -> Iterator[Any]:
    made: list[Graph] = []

    def make(**kw: Any) -> Graph:
        made.append(Graph(redis_url, **kw))
        return made[-1]
    yield make
    for g in made:
        g.close()


def R(mid: str, claim: str, anon: str = "a1") -> ResolveRequest:
    return ResolveRequest(mid, claim, (("anonymous_id", anon),), 1_700_000_000_000)


def test_a_duplicate_is_caught_by_the_window_after_the_replay_tier_expired(graph_of: Any) -> None:
    g = graph_of(dedup_ttl_s=1, dedup_window_s=3600)
    assert g.outcomes(R("m1", "ns.touchpoints/0/5")) == ["applied"]
    time.sleep(2.1)  # the replay tier's dedup:m1 is gone
    assert g.run(g.client.exists(g.keys.dedup("m1"))) == 0
    assert g.outcomes(R("m1", "ns.touchpoints/1/9", anon="a2")) == ["duplicate"]
    assert g.run(g.graph.lookup(("anonymous_id", "a2"))) is None  # nothing of the duplicate applied
    # the same claim is a redelivery later than the replay tier: resolved again, not dropped
    assert g.outcomes(R("m1", "ns.touchpoints/0/5")) == ["applied"]
    # ... and the replay tier holds it again: a client duplicate now is caught there
    assert g.outcomes(R("m1", "ns.touchpoints/2/1")) == ["duplicate"]


def test_the_window_entry_is_the_digest_in_the_slice_of_redis_time_and_expires_with_it(graph_of: Any) -> None:
    g = graph_of(dedup_shard_bits=4)
    before = int(time.time())
    assert g.outcomes(R("m1", "ns.touchpoints/3/77")) == ["applied"]
    after = int(time.time())
    slice_s = W.slice_seconds(86400)
    shard, field = W.digest("m1", 4)
    found = [(s, g.run(g.client.hget(g.keys.window(s, shard), field)))
             for s in range(W.slice_of(before, slice_s), W.slice_of(after, slice_s) + 1)]
    [(sl, tag)] = [(s, t) for s, t in found if t is not None]
    assert tag == b"3/77"
    assert g.window_keys() == [g.keys.window(sl, shard).encode()]  # one hash, named as keys.py names it
    assert g.run(g.client.execute_command("EXPIRETIME", g.keys.window(sl, shard))) == W.expires_at(sl, slice_s)


def test_the_window_forgets_an_id_after_it(graph_of: Any) -> None:
    g = graph_of(dedup_ttl_s=1, dedup_window_s=4)  # slices of 1 s: an id is found for 4 to 5 s
    written = time.time()
    assert g.outcomes(R("m1", "t/0/1")) == ["applied"]
    time.sleep(1.5)  # the replay tier (1 s) is gone; the window still has it
    assert g.outcomes(R("m1", "t/0/2")) == ["duplicate"]
    time.sleep(max(0.0, written + W.SLICES + 1.2 - time.time()))
    assert g.outcomes(R("m1", "t/0/3")) == ["applied"]
    assert len(g.window_keys()) == 1  # the old slice's hash expired; the new sighting is remembered


def test_keys_written_by_the_old_format_still_dedup(graph_of: Any) -> None:
    """Migration: before the window tier, dedup:<mid> held the claim for 7 days and no dw: entry
    existed. Such a key is the replay tier's own format: it keeps deduplicating until it expires."""
    g = graph_of()
    g.run(g.client.set(g.keys.dedup("old1"), "ns.touchpoints/0/1\x1fapplied\x1fp1", ex=7 * 86400))
    assert g.outcomes(R("old1", "ns.touchpoints/0/99")) == ["duplicate"]
    [res] = g.run(g.graph.resolve_batch([R("old1", "ns.touchpoints/0/1")]))
    assert (res.outcome, res.profile_id) == ("applied", "p1")  # a redelivery replays the old answer
    assert g.window_keys() == []  # and the window is not touched for it


def test_several_events_per_call_share_one_window_and_catch_duplicates_inside_a_batch(graph_of: Any) -> None:
    g = graph_of(dedup_shard_bits=0, events_per_call=3)
    reqs = [R(f"m{i}", f"t/0/{i}", anon=f"a{i}") for i in range(7)] + [R("m3", "t/1/3", anon="zz")]
    assert g.outcomes(*reqs) == ["applied"] * 7 + ["duplicate"]
    [key] = g.window_keys()  # shard bits 0: one hash per slice
    assert g.run(g.client.hlen(key)) == 7


def test_an_id_of_an_older_slice_is_answered_there_and_never_written_again(graph_of: Any) -> None:
    """The window reads the older slices before it writes the current one (resolve.lua's
    window_check): an id is held in one slice only, whichever slice answers for it."""
    g = graph_of(dedup_ttl_s=1, dedup_window_s=8, dedup_shard_bits=0)  # slices of 2 s
    slice_s = W.slice_seconds(8)
    assert g.outcomes(R("m1", "t/0/1")) == ["applied"]
    t0 = time.time()  # after the call: its slice (by Redis's clock, read in the call) is at most t0's
    [first] = g.window_keys()
    # wait for the next slice (and for the replay tier to forget m1)
    time.sleep(max(1.1, (W.slice_of(int(t0), slice_s) + 1) * slice_s - t0 + 0.1))
    # the same claim = a redelivery later than the replay tier: resolved again, not re-written;
    # another claim = a duplicate; a new id goes into the current slice
    assert g.outcomes(R("m1", "t/0/1"), R("m1", "t/0/2", anon="zz"), R("m2", "t/0/3", anon="a2")) == \
        ["applied", "duplicate", "applied"]
    assert g.run(g.graph.lookup(("anonymous_id", "zz"))) is None
    keys = sorted(g.window_keys())
    assert len(keys) == 2 and first in keys
    assert [g.run(g.client.hlen(k)) for k in keys] == [1, 1]
    [current] = [k for k in keys if k != first]
    assert g.run(g.client.hgetall(current)) == {W.digest("m2", 0)[1]: b"0/3"}
    assert g.run(g.client.execute_command("EXPIRETIME", current)) > 0


def test_another_text_of_the_script_is_the_one_run(graph_of: Any) -> None:
    """``resolve_lua`` (what the benchmarks comparing two scripts use) replaces the shipped script."""
    from importlib import resources

    from streams.identity.redis_graph import IdentityGraphError

    text = resources.files("streams.identity").joinpath("lua", "resolve.lua").read_text(encoding="utf-8")
    assert graph_of(resolve_lua=text).outcomes(R("m1", "t/0/1")) == ["applied"]
    broken = text.replace("\nreturn out", "\nreturn redis.error_reply('ERR the other script')")
    assert broken != text
    with pytest.raises(IdentityGraphError, match="the other script"):
        graph_of(resolve_lua=broken).outcomes(R("m1", "t/0/1"))
