"""CLI errors that need a real broker (issue 21 Low): ``send`` to a topic that does not exist
waited a minute for its metadata and ended in a traceback; now one line and exit 2."""

from __future__ import annotations

import pytest

from tests.fixtures.stack import run_cli

pytestmark = pytest.mark.integration


def test_send_to_an_unknown_topic_is_one_line_and_exit_2(settings, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text('{"type":"track"}\n')
    result = run_cli(settings, "send", "--topic", f"{settings.namespace}.nope", str(records), timeout_s=60)
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert f"touchpoint send: --topic {settings.namespace}.nope: no such topic" in err
    ok = run_cli(settings, "send", "--topic", settings.topic("touchpoints"), str(records), timeout_s=60)
    assert ok.returncode == 0, ok.stderr.decode()[-2000:]
