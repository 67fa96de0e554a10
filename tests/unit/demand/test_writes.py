"""Coalesced demand table writes (streams/demand/writes.py) against fakes: one changelog record
per key per commit, the latest value, alerts flushed first, a failed value withholds the commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable, Iterator, MutableMapping
from typing import Any

import pytest

from streams.demand.stage import CLOCK_TABLE, STATE_TABLE, DemandStage
from streams.demand.writes import CoalescedWrites, Undelivered
from streams.observability.metrics import Metrics

from .test_stage import CFG, run, scenario


class FakeTopic:
    def prepare_key(self, key: str, serializer: Any) -> tuple[bytes, None]:
        return json.dumps(key).encode(), None

    def prepare_value(self, value: Any, serializer: Any) -> tuple[bytes, None]:
        return json.dumps(value).encode(), None


class FakeTable(MutableMapping[str, Any]):
    """A Faust table on the memory store: ``data`` is what reads see; item assignment is the
    old per-write path (counted)."""

    key_serializer = value_serializer = "json"

    def __init__(self, name: str) -> None:
        self.data: dict[str, Any] = {}  # the memory store's dict
        self.changelog_topic = FakeTopic()
        self.changelog_topic_name = f"app-{name}-changelog"
        self.item_sets = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.item_sets += 1
        self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class FakeBatches:
    def __init__(self, log: list[str]) -> None:
        self.log, self.appended, self.sent = log, [], []
        self.fail_next: list[Hashable] = []

    def append(self, topic: str, key: bytes, value: bytes | None, partition: int, tag: Hashable = None) -> int:
        self.log.append("append")
        self.appended.append((topic, key, value, partition, tag))
        return partition

    async def send(self) -> int:
        self.log.append("send")
        n, self.sent = len(self.appended), self.sent + self.appended
        self.appended = []
        return n

    def take_failures(self) -> tuple[int, list[Hashable]]:
        failed, self.fail_next = self.fail_next, []
        return len(failed), failed


def writer(direct: bool = True, assigned: set[int] | None = None) -> tuple[CoalescedWrites, FakeBatches, list[str]]:
    log: list[str] = []
    batches = FakeBatches(log)

    async def flush() -> None:
        log.append("flush")

    tables = {STATE_TABLE: FakeTable(STATE_TABLE), CLOCK_TABLE: FakeTable(CLOCK_TABLE)}
    return CoalescedWrites(tables, batches, flush, lambda: {0, 1} if assigned is None else assigned, direct, 0.0), batches, log


def test_one_record_per_key_per_commit_with_the_latest_value_and_alerts_first() -> None:
    w, batches, log = writer()
    for n in range(5):
        w.set(STATE_TABLE, "orders/product:a", {"n": n}, 0)
        assert w.tables[STATE_TABLE]["orders/product:a"] == {"n": n}  # reads exact at once
    w.set(CLOCK_TABLE, "0", {"closed": 1}, 0)
    asyncio.run(w.before_commit())
    assert sorted((t, k, v) for t, k, v, _, _ in batches.sent) == [
        ("app-demand-changelog", b'"orders/product:a"', b'{"n": 4}'),
        ("app-demand_clock-changelog", b'"0"', b'{"closed": 1}')]
    assert log == ["flush", "append", "append", "send", "flush"]  # alerts land before the values
    assert w.tables[STATE_TABLE].item_sets == 0 and not w.pending
    log.clear()
    asyncio.run(w.before_commit())  # nothing pending: nothing sent, no flush
    assert log == []


def test_keys_of_partitions_no_longer_assigned_are_dropped() -> None:
    w, batches, _ = writer(assigned={1})
    w.set(STATE_TABLE, "orders/a", 1, 0)
    w.set(STATE_TABLE, "orders/b", 2, 1)
    asyncio.run(w.before_commit())
    assert [k for _, k, _, _, _ in batches.sent] == [b'"orders/b"']


def test_a_value_that_did_not_land_withholds_the_commit_and_is_sent_again_current() -> None:
    w, batches, _ = writer()
    w.set(STATE_TABLE, "orders/a", 1, 0)
    w.set(STATE_TABLE, "orders/b", 1, 1)
    batches.fail_next = [(STATE_TABLE, "orders/a")]
    with pytest.raises(Undelivered):
        asyncio.run(w.before_commit())
    assert w.pending == {(STATE_TABLE, "orders/a"): 0}
    w.set(STATE_TABLE, "orders/a", 2, 0)
    batches.sent.clear()
    asyncio.run(w.before_commit())
    assert [(k, v) for _, k, v, _, _ in batches.sent] == [(b'"orders/a"', b"2")]


def test_other_stores_write_through_the_table() -> None:
    w, batches, log = writer(direct=False)
    w.set(STATE_TABLE, "orders/a", 1, 0)
    assert w.tables[STATE_TABLE].item_sets == 1 and not w.pending
    asyncio.run(w.before_commit())
    assert log == [] and batches.sent == []


def test_the_stage_through_coalesced_writes_keeps_the_same_state_with_fewer_records() -> None:
    recs = scenario()
    ref = DemandStage(CFG, {}, {}, Metrics())
    alerts_ref = run(ref, recs)
    w, batches, _ = writer()
    stage = DemandStage(CFG, w.tables[STATE_TABLE], w.tables[CLOCK_TABLE], Metrics())
    stage.write = w.set
    alerts, writes = [], 0
    for i, (partition, value) in enumerate(recs):
        outcome = stage.handle(partition, value)
        alerts += outcome.alerts
        writes += len(outcome.writes) + (outcome.clock is not None)
        if i % 10 == 9:
            asyncio.run(w.before_commit())
    asyncio.run(w.before_commit())
    assert alerts == alerts_ref
    assert dict(stage.state) == dict(ref.state) and dict(stage.clocks) == dict(ref.clocks)
    # the changelog, replayed in order, gives the same tables (what a recovering worker reads)
    replayed: dict[str, dict[str, Any]] = {}
    for topic, k, v, _, _ in batches.sent:
        replayed.setdefault(topic, {})[json.loads(k)] = json.loads(v)
    assert replayed["app-demand-changelog"] == json.loads(json.dumps(dict(ref.state)))
    assert len(batches.sent) < writes * 0.6  # fewer records than writes
