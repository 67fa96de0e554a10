from touchpoint_tools.bench.pipeline.pyspy import area, parse_frame, summarize

RAW = """\
<module> (streams/cli/main.py:55);run (asyncio/base_events.py:10);process_batch (/w/streams/ingest/stage.py:95);decode (/w/streams/ingest/decode.py:30) 30
<module> (streams/cli/main.py:55);run (asyncio/base_events.py:10);process_batch (/w/streams/ingest/stage.py:99) 10
<module> (streams/cli/main.py:55);run (asyncio/base_events.py:10);send (/v/lib/python3.11/site-packages/aiokafka/producer/producer.py:470) 60
"""


def test_parse_frame_strips_line_numbers_and_prefixes():
    assert parse_frame("decode (/w/streams/ingest/decode.py:30)") == ("decode", "streams/ingest/decode.py")
    assert parse_frame("x (/v/lib/python3.11/site-packages/faust/streams.py:1)") == ("x", "faust/streams.py")
    assert parse_frame("weird") == ("weird", "")


def test_area():
    assert area("faust/streams.py") == "faust"
    assert area("streams/demand/stage.py") == "streams.demand"
    assert area("selectors.py") == "stdlib:selectors"


def test_summarize_self_inclusive_and_areas():
    s = summarize(RAW)
    assert s["samples"] == 100
    assert s["self"][0] == ["send (aiokafka/producer/producer.py)", 60.0]
    assert ["decode (streams/ingest/decode.py)", 30.0] in s["self"]
    incl = dict((name, share) for name, share in s["inclusive"])
    assert incl["process_batch (streams/ingest/stage.py)"] == 40.0  # counted once per stack, lines merged
    assert incl["run (asyncio/base_events.py)"] == 100.0
    assert dict((a, v) for a, v in s["areas"]) == {"aiokafka": 60.0, "streams.ingest": 40.0}
    assert summarize("")["samples"] == 0
