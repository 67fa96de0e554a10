"""Issue 21: a send Faust makes for us (demand table changelogs, alerts) and Kafka refuses is counted."""

import subprocess
import sys

SCRIPT = """
from streams.app import create_app
from streams.settings import Settings

app, ctx = create_app(Settings.from_env({"TOUCHPOINT_NAMESPACE": "senderr", "TOUCHPOINT_DEV_MODE": "true"}))
app.sensors.on_send_error(None, RuntimeError("refused"), {sensor: None for sensor in app.sensors})
print("failed:%d" % ctx.metrics.send_failures.labels("faust")._value.get())
"""


def test_faust_send_errors_are_counted():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "failed:1" in out.stdout, out.stdout
