"""The worker runs on uvloop, and declaring the app binds nothing to an event loop.

A table store built at declaration time once resolved the standard library's loop before the
worker installed uvloop, and every worker ran on it unnoticed (~7% more CPU per record).
Each check runs in a fresh interpreter: event-loop policies are process-global.
"""

import subprocess
import sys

SCRIPT = """
import asyncio
from streams.settings import Settings
from streams.app import create_app
from streams.cli.worker import build_worker, use_event_loop

settings = Settings.from_env({"TOUCHPOINT_NAMESPACE": "looptest", "TOUCHPOINT_DEV_MODE": "true"})
app, ctx = create_app(settings)
bound = [name for name, service in [("app", app), ("transport", app.transport), *app.tables.items()]
         if getattr(service, "_loop", None) is not None]
print("bound:" + ",".join(bound))
use_event_loop(settings)
print("loop:" + type(build_worker(app, settings).loop).__module__)
"""


def test_declaring_the_app_binds_no_loop_and_the_worker_runs_on_uvloop():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    assert lines["bound"] == "", f"bound to a loop at declaration time: {lines['bound']}"
    assert lines["loop"].startswith("uvloop"), lines["loop"]
