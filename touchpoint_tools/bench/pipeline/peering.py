"""Peers of a bench run: the interpreter that has them, and one run of a peer as its own process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streams.kafka import topics as T
from streams.settings import Settings

if TYPE_CHECKING:
    from touchpoint_tools.bench.pipeline.harness import BenchOptions

__all__ = ["peer_python", "run_peer"]

ROOT = Path(__file__).resolve().parents[3]


def peer_python(module: str, log: Callable[[str], None], timeout_s: float = 900.0) -> str:
    """The interpreter for a peer: this one, unless the peer needs Quix Streams and it is not
    installed here; then ``.venv-bench`` (created on first use from the pinned ``bench`` extra)."""
    import importlib.util

    if module != "quix_app" or importlib.util.find_spec("quixstreams") is not None:
        return sys.executable
    venv = ROOT / ".venv-bench"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import quixstreams, streams.ingest.decode"]
    if python.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
        return str(python)
    lock = ROOT / "requirements.lock"
    if not (ROOT / "pyproject.toml").exists() or not lock.exists():
        raise RuntimeError("quixstreams is not installed: pip install 'touchpoint-streams[bench]'")
    log(f"installing the bench peers (quixstreams, pinned) into {venv} (first use only)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(lock),
                    "-e", f"{ROOT}[bench]"], check=True, timeout=timeout_s, cwd=ROOT)
    return str(python)


async def run_peer(module: str, settings: Settings, group: str, expect: int, opts: BenchOptions, log: Callable[[str], None],
                   topic: str | None = None) -> dict[str, Any]:
    """Run one peer (``touchpoint_tools.bench.pipeline.peers.<module>``) on ``topic`` (default: the input topic of
    ``settings``) in its own process with the environment of ``settings``; its JSON result."""
    try:
        python = await asyncio.to_thread(peer_python, module, log)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return {"events_per_s": None, "error": f"peer not available: {exc}"[:400]}
    cmd = [python, "-m", f"touchpoint_tools.bench.pipeline.peers.{module}", "--topic", topic or settings.topic(T.INPUT),
           "--group", group, "--expect", str(expect), "--timeout", str(opts.phase_timeout_s),
           "--state-dir", str(opts.workdir / f"{group}-state")]
    env = {**os.environ, **settings.to_env()}
    log(f"[peer {module}] consuming {expect:,} events")
    log_path = opts.workdir / f"peer-{module}.log"
    with open(log_path, "wb") as err:
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.PIPE, stderr=err,
                                                    stdin=subprocess.DEVNULL)
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), opts.phase_timeout_s + 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {"events_per_s": None, "error": "timed out"}
    lines = [ln for ln in stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        return {"events_per_s": None, "error": f"no result (exit {proc.returncode}): {tail[-600:]}"}
    result = orjson.loads(lines[-1])
    log(f"[peer {module}] {result.get('events_per_s') or 0:,.0f} ev/s")
    return result
