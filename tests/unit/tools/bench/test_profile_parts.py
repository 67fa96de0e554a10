"""touchpoint_tools/bench/profile_parts.py: py-spy stacks bucketed by part of the pipeline."""

from __future__ import annotations

from touchpoint_tools.bench import profile_parts as pp

RAW = "\n".join([
    "main (streams/cli/main.py:52);Agent._execute_actor (faust/agents/agent.py:698);"
    "register.<locals>.demand (streams/demand/agent.py:74);Stream.events (faust/streams.py:1);Stream._c_aiter (faust/streams.py:2) 30",
    "main (streams/cli/main.py:52);Agent._execute_actor (faust/agents/agent.py:698);"
    "register.<locals>.demand (streams/demand/agent.py:74);DemandStage.process_sliced (streams/demand/stage.py:9) 50",
    "main (streams/cli/main.py:52);BatchSource.run_once (streams/kafka/batchsource.py:1);"
    "register.<locals>.process (streams/ingest/agent.py:2);IngestStage.process_batch (streams/ingest/stage.py:3);"
    "IngestStage._sealed (streams/ingest/stage.py:4) 15",
    "WorkerThread.run (mode/threads.py:1);ServiceThread._start_thread (mode/threads.py:2) 400",
    "main (x.py:1) 5",
])


def test_samples_go_to_the_first_matching_part_and_idle_consumer_thread_is_left_out() -> None:
    parts, total = pp.shares(RAW)
    assert total == 100  # the 400 idle samples of the consumer thread are not counted
    assert parts["Faust per-record delivery (consumer drain, conductor, Stream iteration)"] == 30
    assert parts["demand: stage and table writes"] == 50
    assert parts["ingest: audit sealing (data keys, identity.keys, marked published)"] == 15  # before the ingest stage
    assert parts[pp.OTHER] == 5


def test_table_turns_shares_into_us_per_event() -> None:
    text = pp.table([("ours", RAW, 200.0)])
    assert "| demand: stage and table writes | 50.0%, 100.0 |" in text
    assert text.splitlines()[-1] == "| samples counted | 100 |"


def test_bad_argument_is_a_one_line_error(capsys, tmp_path) -> None:
    assert pp.main(["no-cpu-given"]) == 2
    assert pp.main([f"{tmp_path / 'missing.txt'}=1.0"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
    good = tmp_path / "p.txt"
    good.write_text(RAW)
    assert pp.main([f"{good}=100"]) == 0


def test_own_self_time_goes_to_the_innermost_function_of_streams_and_leaves_idle_out() -> None:
    own, total = pp.own_self(RAW)
    assert total == 100  # the idle consumer thread left out, as in shares()
    # innermost frame: Stream._c_aiter (faust) is not ours; the demand stage and the sealing call are
    assert own == {"DemandStage.process_sliced (streams/demand/stage.py)": 50,
                   "IngestStage._sealed (streams/ingest/stage.py)": 15}
    text = pp.own_table("ours", RAW, 200.0, 1)
    assert "| `DemandStage.process_sliced (streams/demand/stage.py)` | 50.0% | 100.0 |" in text
    assert "| all of streams/ | 65.0% | 130.0 |" in text
