"""A bucket close in slices (DemandStage.process_sliced): the loop runs between slices, the result
is identical to one synchronous close, and a close cut half-way (crash, failure, rebalance) is
redone from the committed tables with exactly the result of an uncut run."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streams.demand.slicing import run_sliced
from streams.demand.stage import CloseInterrupted, DemandStage
from streams.observability.metrics import Metrics

from .test_stage import new_stage, run, scenario
from .test_stage_live import FIVE, dump, five_minute


def many_keys(keys: int = 12, hours: int = 4 * 24) -> list[tuple[int, bytes]]:
    """``keys`` keys on one partition (hourly, like :func:`scenario`), one of them surging."""
    out = []
    for h in range(hours):
        for i in range(keys):
            n = 30 + (h * 7 + i * 3) % 11 + (150 if i == 5 and 80 <= h < 84 else 0)
            out.append((0, orjson.dumps({"k": f"product:p{i:02d}", "m": "orders", "b": 1_767_571_200_000 + h * 3_600_000,
                                         "n": n, "c": [[0, n, h]]})))
    return out


async def run_sliced_stage(stage: DemandStage, records: list[tuple[int, bytes]], budget_s: float = 0.0) -> tuple[list[dict[str, Any]], int]:
    """Every record through process_sliced + commit, with a task ticking on the loop meanwhile;
    returns the alerts and how many ticks ran *during* closes."""
    alerts: list[dict[str, Any]] = []
    ticks = [0, False]  # ticks seen inside a close, in a close now

    async def ticker() -> None:
        while True:
            ticks[0] += bool(ticks[1])
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ticker())
    try:
        for partition, value in records:
            ticks[1] = True
            outcome = await stage.process_sliced(partition, value, budget_s)
            ticks[1] = False
            stage.commit(outcome)
            alerts += outcome.alerts
    finally:
        task.cancel()
    return alerts, int(ticks[0])


@pytest.mark.parametrize("records", ["hourly", "five", "many"])
def test_sliced_closes_give_identical_results_and_let_the_loop_run(records: str) -> None:
    recs = {"hourly": scenario, "five": five_minute, "many": many_keys}[records]()
    make = (lambda: DemandStage(FIVE, {}, {}, Metrics())) if records == "five" else new_stage
    ref, sliced = make(), make()
    alerts_ref = run(ref, recs)
    alerts, ticks = asyncio.run(run_sliced_stage(sliced, recs))
    assert alerts == alerts_ref and any(a["state"] == "OPEN" for a in alerts_ref)
    assert dump(sliced) == dump(ref)
    assert ticks > 0  # other tasks ran in the middle of closes


def test_run_sliced_yields_only_when_the_budget_is_spent() -> None:
    now = [0.0]

    def steps(n: int):  # each step takes 4 ms of the fake clock
        for _ in range(n):
            now[0] += 0.004
            yield

    assert asyncio.run(run_sliced(steps(10), 0.01, clock=lambda: now[0])) == 3  # after steps 3, 6, 9
    assert asyncio.run(run_sliced(steps(10), 1.0, clock=lambda: now[0])) == 0


async def _cut(stage: DemandStage, partition: int, value: bytes, after: int) -> bool:
    """Start a sliced close and cancel it after ``after`` loop turns (a crash or a failed
    record half-way); True when it was cut before it finished."""
    task = asyncio.ensure_future(stage.process_sliced(partition, value, 0.0))
    for _ in range(after):
        await asyncio.sleep(0)
    if task.done():
        task.result()
        return False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return True


@pytest.mark.parametrize("restart", [True, False], ids=["crash-new-worker", "failure-same-worker"])
def test_a_close_cut_half_way_is_redone_from_the_tables_exactly(restart: bool) -> None:
    """Cut every 5th close half-way. ``restart``: the worker dies; a new one recovers the tables
    as committed (a JSON round trip, as from the changelog) and processes the record again.
    Else the same stage processes it again (its live cache holds monitors advanced by the cut
    close and must not use them). Either way: the alerts and tables of an uncut run."""
    recs = many_keys()
    ref = new_stage()
    alerts_ref = run(ref, recs)

    async def go() -> tuple[DemandStage, list[dict[str, Any]], int]:
        stage, alerts, cut, closes = new_stage(), [], 0, 0
        for partition, value in recs:
            clock = stage.clocks.get("0")
            probe = DemandStage(stage.config, stage.state, stage.clocks, Metrics(), live_cache=0).process(partition, value)
            if probe.closed_buckets and (closes := closes + 1) % 5 == 0:
                before = dump(stage)
                cut += await _cut(stage, partition, value, after=6)  # 12 keys: cut after about half
                assert dump(stage) == before and stage.clocks.get("0") == clock  # nothing written
                if restart:
                    tables = orjson.loads(before)
                    stage = new_stage(state=tables["state"], clocks=tables["clocks"])
            outcome = await stage.process_sliced(partition, value, 0.0)
            stage.commit(outcome)
            alerts += outcome.alerts
        return stage, alerts, cut

    stage, alerts, cut = asyncio.run(go())
    assert cut >= 10
    assert alerts == alerts_ref and any(a["state"] == "OPEN" for a in alerts_ref)
    assert dump(stage) == dump(ref)


def test_a_rebalance_during_a_close_refuses_its_outcome() -> None:
    """forget() (a rebalance reached the stage) while a close is in progress: CloseInterrupted,
    nothing written; processing the record again gives the uncut result."""
    recs = many_keys(hours=3 * 24)
    ref = new_stage()
    alerts_ref = run(ref, recs)

    async def go() -> tuple[DemandStage, list[dict[str, Any]], int]:
        stage, alerts, refused = new_stage(), [], 0
        for i, (partition, value) in enumerate(recs):
            if i % 12 == 0 and (i // 12) % 7 == 3:  # the first record of an hour closes the last
                task = asyncio.ensure_future(stage.process_sliced(partition, value, 0.0))
                await asyncio.sleep(0)
                if not task.done():
                    before = dump(stage)
                    stage.forget()
                    with pytest.raises(CloseInterrupted):
                        await task
                    assert dump(stage) == before
                    refused += 1
                else:
                    task.cancel()
            outcome = await stage.process_sliced(partition, value, 0.0)
            stage.commit(outcome)
            alerts += outcome.alerts
        return stage, alerts, refused

    stage, alerts, refused = asyncio.run(go())
    assert refused >= 3
    assert alerts == alerts_ref
    assert dump(stage) == dump(ref)


def test_on_slice_runs_between_slices_only() -> None:
    stage, ref = new_stage(), new_stage()
    recs = many_keys(hours=30)
    slices = [0]
    stage.on_slice = lambda: slices.__setitem__(0, slices[0] + 1)

    async def go() -> int:
        yields = 0
        for partition, value in recs:
            outcome = await stage.process_sliced(partition, value, 0.0)
            stage.commit(outcome)
            yields += outcome.closed_buckets > 0
        return yields

    closes = asyncio.run(go())
    run(ref, recs)
    assert dump(stage) == dump(ref)
    assert slices[0] >= closes * 11  # 12 keys, budget 0: a yield after each step but the first
