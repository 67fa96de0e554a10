"""Figures computed from one drain: stages present, memory per table entry, hops and produce batching."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams.kafka import topics as T
from streams.settings import Settings
from touchpoint_tools.bench.pipeline.topics import Kafka, log_batches

if TYPE_CHECKING:
    from touchpoint_tools.bench.pipeline.harness import Drain

__all__ = ["stages_present", "memory", "redis_keys", "hops", "batching", "per_event_us", "DEDUP_FAMILIES"]

#: Key families of dedup (replay tier: TOUCHPOINT_DEDUP_TTL_S; window tier dw: TOUCHPOINT_DEDUP_WINDOW_S); the others are the graph.
DEDUP_FAMILIES = ("dedup", "dres", "dw")


def stages_present(topics: list[str], settings: Settings) -> list[str]:
    """The pipeline stages this worker runs, from the topics it declared at start-up."""
    stages = ["ingest", "identity"]
    if f"{settings.app_id}-profiles-changelog" in topics:
        stages.append("profiles")
    if f"{settings.app_id}-demand-changelog" in topics:
        stages.append("demand")
    return stages


async def memory(drain: Drain) -> dict[str, Any]:
    """Bytes per profile and per demand key (newest changelog values), RSS growth per table entry."""
    s = drain.settings
    assert s is not None
    out: dict[str, Any] = {}
    async with Kafka(s) as k:
        topics = await k.topics(s.app_id + "-")
        prof_topic, demand_topic = f"{s.app_id}-profiles-changelog", f"{s.app_id}-demand-changelog"
        if prof_topic in topics:
            from streams.profiles.profile import is_tomb_bytes

            st = await k.changelog_stats(prof_topic, is_dead=is_tomb_bytes)
            out.update(profiles=st.live_keys, profile_keys=st.keys, bytes_per_profile=st.bytes_per_key,
                       profile_method="newest changelog value per live profile (key + value bytes, orjson)")
        if demand_topic in topics:
            st = await k.changelog_stats(demand_topic)
            out.update(demand_keys=st.live_keys, bytes_per_demand_key=st.bytes_per_key,
                       demand_method="newest changelog value per demand key (key + value bytes, Faust JSON)")
    if drain.rss_before and drain.rss_after:
        grown = drain.rss_after - drain.rss_before
        out["rss_growth_bytes"] = grown
        if out.get("profiles"):
            out["rss_bytes_per_profile"] = grown / out["profiles"]
        entries = (out.get("profiles") or 0) + (out.get("demand_keys") or 0)
        if entries:
            out["rss_bytes_per_table_entry"] = grown / entries
    return out


async def redis_keys(settings: Settings, events: int, sample: int = 500) -> dict[str, Any]:
    """Redis keys of the namespace by family (``dedup``, ``dres``, ``id``, ``p``, ...): how many,
    per input event, and bytes per key by ``MEMORY USAGE`` of up to ``sample`` of them (the key's
    allocation, without its expires entry: docs/performance.md, "Capacity", has both). Sums the
    dedup window's bytes per event and the identity graph's bytes per event."""
    from redis.asyncio import Redis

    prefix = (settings.namespace + ":").encode()
    redis = Redis.from_url(settings.redis_url, socket_timeout=30)
    families: dict[str, list[bytes]] = {}
    try:
        async for key in redis.scan_iter(match=prefix + b"*", count=5000):
            rest = key[len(prefix):]
            families.setdefault(rest.split(b":", 1)[0].decode(errors="replace"), []).append(key)
        out: dict[str, Any] = {"families": {}}
        for name, keys in sorted(families.items()):
            pipe = redis.pipeline(transaction=False)
            for key in keys[:sample]:
                pipe.memory_usage(key, samples=0)
            usage = [u for u in await pipe.execute() if u is not None]
            per_key = sum(usage) / len(usage) if usage else 0.0
            out["families"][name] = {"keys": len(keys), "per_event": len(keys) / events if events else None,
                                     "bytes_per_key": per_key}
    finally:
        await redis.aclose()
    fams = out["families"]
    dedup = sum(f["keys"] * f["bytes_per_key"] for n, f in fams.items() if n in DEDUP_FAMILIES)
    graph = sum(f["keys"] * f["bytes_per_key"] for n, f in fams.items() if n not in DEDUP_FAMILIES)
    out["dedup_bytes_per_event"] = dedup / events if events else None
    out["graph_bytes_per_event"] = graph / events if events else None
    return out


def hops(drain: Drain) -> dict[str, Any]:
    """Records produced per input event on each output topic, and agent deliveries per input event."""
    s = drain.settings
    assert s is not None
    n = drain.events
    prefix = s.namespace + "."
    produced = {}
    for topic, count in sorted(drain.topic_records.items()):
        if topic == s.topic(T.INPUT):
            continue
        name = topic[len(prefix):] if topic.startswith(prefix) else topic
        name = name.replace("touchpoint-", "") if name.startswith("touchpoint-") else name
        produced[name] = count / n
    consumed = {T.INPUT: 1.0}
    if "profiles" in drain.stages:
        consumed[T.PROFILE_EVENTS] = drain.topic_records.get(s.topic(T.PROFILE_EVENTS), 0) / n
    if "demand" in drain.stages:
        consumed[T.DEMAND_COUNTS] = drain.topic_records.get(s.topic(T.DEMAND_COUNTS), 0) / n
    p_total, c_total = sum(produced.values()), sum(consumed.values())
    return {"produced": produced, "produced_total": p_total, "consumed": consumed, "consumed_total": c_total,
            "total": p_total + c_total}


def batching(base: Settings, drain: Drain, broker_pid: int | None) -> dict[str, float] | None:
    """Records per produce batch on each output topic, from the local broker's log segments."""
    from touchpoint_tools.devstack.stack import StackConfig

    if broker_pid is None or drain.settings is None:
        return None
    data_dir = StackConfig.from_settings(base).data_dir("kafka")
    out = {}
    for topic in drain.topic_records:
        if topic == drain.settings.topic(T.INPUT):
            continue
        batches, records = log_batches(data_dir, topic)
        if batches:
            out[topic[len(drain.settings.namespace) + 1:].removeprefix("touchpoint-")] = records / batches
    return out or None


def per_event_us(seconds: float | None, events: int) -> float | None:
    return seconds / events * 1e6 if seconds is not None and events else None
