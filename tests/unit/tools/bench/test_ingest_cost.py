"""touchpoint_tools/bench/ingest_cost.py runs on a small stream and measures what it says."""

from __future__ import annotations

from touchpoint_tools.bench.ingest_cost import PARTITIONS, applied_touchpoints, batches, client_cost, demand_pass, stage_pass
from touchpoint_tools.bench.prepare_cost import fixed_records


def test_the_parts_run_over_the_bench_stream() -> None:
    values = fixed_records(600)
    work = batches(values, 100)
    assert [b[0].partition for b in work] == [n % PARTITIONS for n in range(6)]
    assert [r.offset for r in work[4]] == list(range(100, 200))  # offsets per partition, in order
    total, graph = stage_pass(work)
    assert total > graph > 0
    applied = applied_touchpoints(work)
    assert sum(len(t) for _, _, t in applied) == 600  # the stream has no malformed records
    demand_pass(applied)
    from streams.events.model import dedup_id
    from streams.identity.model import ResolveRequest

    requests = [ResolveRequest(dedup_id(t.message_id, t.scope), f"t/{p}/{i}", t.identifiers, t.ts_ms)
                for p, _, tps in applied for i, t in enumerate(tps)]
    assert client_cost(requests, 1) > 0
