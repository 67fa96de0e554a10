"""``touchpoint wait-idle`` reads both worker groups (streams/kafka/reading.py): the input is
read by the ingest service's own group, the derived topics by Faust's. A group that never
committed a partition it reads counts as behind on it, so idle means every input record went
through ingest as well as every derived record through the agents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.kafka import reading
from streams.settings import Settings

S = Settings.from_env({}, namespace="ns", partitions=2)
INPUT, EVENTS = S.topic("touchpoints"), S.topic("profile-events")


class _Admin:
    def __init__(self, committed: dict[str, dict[TopicPartition, int]]) -> None:
        self.committed = committed

    async def list_topics(self) -> list[str]:
        return [INPUT, EVENTS]

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [{"topic": t, "error_code": 0, "partitions": [{"partition": 0}, {"partition": 1}]} for t in topics]

    async def list_consumer_groups(self) -> list[tuple[str, str]]:
        return [(g, "consumer") for g in self.committed]

    async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, Any]:
        return {tp: SimpleNamespace(offset=o) for tp, o in self.committed.get(group, {}).items()}


class _Reader:
    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 10 for tp in tps}


def _patch(monkeypatch: pytest.MonkeyPatch, committed: dict[str, dict[TopicPartition, int]]) -> None:
    @asynccontextmanager
    async def fake(settings: Settings) -> AsyncIterator[tuple[_Admin, _Reader]]:
        yield _Admin(committed), _Reader()

    monkeypatch.setattr(reading, "admin_and_reader", fake)


def _all(topic: str, offset: int) -> dict[TopicPartition, int]:
    return {TopicPartition(topic, p): offset for p in (0, 1)}


async def test_an_ingest_group_that_never_committed_is_behind_on_the_whole_input(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch(monkeypatch, {S.app_id: _all(EVENTS, 10)})
    lag = await reading.namespace_lag(S)
    assert lag == {S.app_id: 0, S.ingest_group: 20}


async def test_idle_needs_both_groups_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch(monkeypatch, {S.app_id: _all(EVENTS, 7), S.ingest_group: _all(INPUT, 10)})
    assert (await reading.namespace_lag(S)).total == 6
    _patch(monkeypatch, {S.app_id: _all(EVENTS, 10), S.ingest_group: _all(INPUT, 10)})
    assert (await reading.namespace_lag(S)).total == 0


async def test_faust_groups_old_commits_on_the_input_do_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the upgrade Faust's group read the input; its stale commits there are not lag."""
    _patch(monkeypatch, {S.app_id: {**_all(EVENTS, 10), **_all(INPUT, 3)}, S.ingest_group: _all(INPUT, 10)})
    assert (await reading.namespace_lag(S)).total == 0
