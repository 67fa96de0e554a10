"""Forecast accuracy, side by side in one run: ours, seasonal naive, statsforecast MSTL and AutoETS.

Usage (from the repo root):

    .venv/bin/python touchpoint_tools/bench/forecast_m4.py [--m4 DIR] [--nab DIR] [--no-peers] [--limit N] [--json]

* M4 Hourly development half (``Hourly-train-dev.csv`` / ``Hourly-test-dev.csv``), h = 48: M4's
  MASE (m = 24), sMAPE, 95 % coverage and MSIS, plus 80 % coverage; CPU seconds per series.
  DIR: ``--m4``, else ``$TOUCHPOINT_M4_DIR``, else ``../shared/data/m4`` next to the repo.
* NAB ``realKnownCause/nyc_taxi.csv`` (30-min counts), 24-hour horizon (48 steps) from rolling
  origins (weekly, 5 h later each time) after the first 4 weeks; MASE scaled by the daily
  (m = 48) naive of the whole history; statsforecast fitted on the last 8 weeks.
  DIR: ``--nab``, else ``$TOUCHPOINT_NAB_DIR``, else ``../shared/data/nab``.

Ours is :func:`streams.demand.forecast_offline.forecast_series`, the function behind
``touchpoint forecast --csv`` (M4 rows get synthetic hourly UTC timestamps). statsforecast is a
benchmark-only dependency: when it is not importable, the script creates ``.venv-bench`` in the
repo (``pip install statsforecast==2.1.1``, first use only) and re-runs itself there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from forecast_metrics import read_m4, score, seasonal_naive  # noqa: E402

from streams.demand.forecast_offline import forecast_series  # noqa: E402
from streams.demand.offline import read_series  # noqa: E402

STATSFORECAST = "statsforecast==2.1.1"
H_M4 = 48
T0_MS = 1_577_836_800_000  # 2020-01-01T00:00Z, synthetic start of every M4 series
HOUR_MS = 3_600_000
PEER_WEEKS = 8

Forecast = tuple[list[float], list[float], list[float], list[float], list[float]]  # mean, lo95, hi95, lo80, hi80


def ensure_peers(argv: list[str]) -> None:
    """Re-run under .venv-bench when statsforecast is missing (creating it on first use)."""
    import importlib.util

    if importlib.util.find_spec("statsforecast") is not None:
        return
    venv = ROOT / ".venv-bench"
    python = venv / "bin" / "python"
    if os.environ.get("TOUCHPOINT_FORECAST_BENCH_REEXEC"):
        raise SystemExit(f"statsforecast still missing in {python}; run with --no-peers")
    probe = [str(python), "-c", "import statsforecast"]
    if not python.exists() or subprocess.run(probe, capture_output=True, timeout=120).returncode != 0:
        print(f"installing {STATSFORECAST} into {venv} (first use only)", file=sys.stderr, flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", STATSFORECAST],
                       check=True, timeout=1800)
    os.environ["TOUCHPOINT_FORECAST_BENCH_REEXEC"] = "1"
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])


def ours(history: list[float], h: int, ts: list[int] | None = None) -> Forecast:
    stamps = ts if ts is not None else [T0_MS + i * HOUR_MS for i in range(len(history))]
    pts = forecast_series(stamps, history, h)
    return ([p[1] for p in pts], [p[4] for p in pts], [p[5] for p in pts], [p[2] for p in pts], [p[3] for p in pts])


def statsforecast_runner(name: str, seasons: list[int]) -> Callable[[list[list[float]], int], list[Forecast]]:
    """Fit-and-forecast of one statsforecast model over many series (one process, n_jobs=1)."""
    import numpy as np
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    def model():  # noqa: ANN202
        return MSTL(season_length=seasons) if name == "MSTL" else AutoETS(season_length=seasons[0])

    def run(histories: list[list[float]], h: int) -> list[Forecast]:
        frames = [pd.DataFrame({"unique_id": i, "ds": np.arange(len(y)), "y": np.asarray(y, dtype=float)})
                  for i, y in enumerate(histories)]
        df = pd.concat(frames, ignore_index=True)
        sf = StatsForecast(models=[model()], freq=1, n_jobs=1)
        out = sf.forecast(df=df, h=h, level=[80, 95])
        out = out.sort_values(["unique_id", "ds"])
        res: list[Forecast] = []
        for i in range(len(histories)):
            g = out[out["unique_id"] == i]
            res.append(tuple(g[c].tolist() for c in (name, f"{name}-lo-95", f"{name}-hi-95", f"{name}-lo-80", f"{name}-hi-80")))
        return res

    return run


def _agg(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}


def bench_m4(m4: Path, peers: bool, limit: int | None, log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    data = read_m4(m4 / "Hourly-train-dev.csv", m4 / "Hourly-test-dev.csv")[:limit]
    results: dict[str, dict[str, float]] = {}
    for name, fn in (("ours", ours), ("seasonal naive", lambda y, h: seasonal_naive(y, h, 24))):
        t = time.process_time()
        fcs = [fn(hist, H_M4) for _, hist, _ in data]
        cpu = (time.process_time() - t) / len(data)
        results[name] = _agg([score(hist, fut, *fc) for (_, hist, fut), fc in zip(data, fcs, strict=True)]) | {"cpu_s": cpu}
        log(f"M4 {name}: MASE {results[name]['mase']:.3f}")
    if peers:
        for name, seasons in (("MSTL", [24, 168]), ("AutoETS", [24])):
            run = statsforecast_runner(name, seasons)
            run([data[0][1]], H_M4)  # JIT warm-up, not timed
            t = time.process_time()
            fcs = run([hist for _, hist, _ in data], H_M4)
            cpu = (time.process_time() - t) / len(data)
            label = f"statsforecast {name}" + (" (24, 168)" if name == "MSTL" else " (24)")
            results[label] = _agg([score(hist, fut, *fc) for (_, hist, fut), fc in zip(data, fcs, strict=True)]) | {"cpu_s": cpu}
            log(f"M4 {label}: MASE {results[label]['mase']:.3f}")
    return results


def bench_taxi(nab: Path, peers: bool, log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    rows = [r for r in read_series(nab / "data/realKnownCause/nyc_taxi.csv") if not r.skipped]
    ts = [r.ts_ms for r in rows]
    ys = [r.value for r in rows]
    h, m, week = 48, 48, 336
    origins = list(range(4 * week, len(ys) - h + 1, week + 10))  # weekly, 5 h later each time
    results: dict[str, dict[str, float]] = {}
    runners: list[tuple[str, Callable[[list[list[float]], list[int]], list[Forecast]]]] = [
        ("ours", lambda hs, os_: [ours(y, h, ts[:o]) for y, o in zip(hs, os_, strict=True)]),
        ("seasonal naive", lambda hs, os_: [seasonal_naive(y, h, m) for y in hs]),
    ]
    if peers:
        for name, seasons in (("MSTL", [m, week]), ("AutoETS", [m])):
            run = statsforecast_runner(name, seasons)
            run([ys[:week * 2]], h)
            label = f"statsforecast {name}" + (" (48, 336)" if name == "MSTL" else " (48)")
            # The batch models are fitted on the last PEER_WEEKS weeks (AutoETS with m = 48 on
            # 10k points takes minutes per origin); ours learns the whole series, streaming.
            runners.append((label, lambda hs, os_, run=run: run([y[-PEER_WEEKS * week:] for y in hs], h)))
    histories = [ys[:o] for o in origins]
    for label, fn in runners:
        t = time.process_time()
        fcs = fn(histories, origins)
        cpu = (time.process_time() - t) / len(origins)
        results[label] = _agg([score(ys[:o], ys[o:o + h], *fc, m=m) for o, fc in zip(origins, fcs, strict=True)]) | {
            "cpu_s": cpu, "origins": len(origins)}
        log(f"nyc_taxi {label}: MASE {results[label]['mase']:.3f}")
    return results


def table(title: str, results: dict[str, dict[str, float]]) -> str:
    lines = [title, f"| {'method':32s} | {'MASE':>6s} | {'sMAPE':>6s} | {'cov95':>6s} | {'cov80':>6s} | {'MSIS':>7s} | {'CPU s/series':>12s} |",
             f"|{'-' * 34}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 14}|"]
    for name, r in results.items():
        lines.append(f"| {name:32s} | {r['mase']:6.3f} | {r['smape']:6.2f} | {r['cov95']:6.3f} | {r['cov80']:6.3f} | "
                     f"{r['msis']:7.2f} | {r['cpu_s']:12.4f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--m4", type=Path, default=os.environ.get("TOUCHPOINT_M4_DIR") or ROOT.parent / "shared/data/m4")
    p.add_argument("--nab", type=Path, default=os.environ.get("TOUCHPOINT_NAB_DIR") or ROOT.parent / "shared/data/nab")
    p.add_argument("--no-peers", action="store_true", help="skip statsforecast (ours and seasonal naive only)")
    p.add_argument("--no-taxi", action="store_true", help="skip nyc_taxi")
    p.add_argument("--no-m4", action="store_true", help="skip M4 (nyc_taxi only)")
    p.add_argument("--limit", type=int, help="only the first N M4 series (a quick check, not the figures)")
    p.add_argument("--json", action="store_true", help="also print one JSON line last")
    args = p.parse_args(argv)
    if not (args.m4 / "Hourly-train-dev.csv").exists():
        print(f"forecast_m4: no Hourly-train-dev.csv in {args.m4} (--m4 DIR or TOUCHPOINT_M4_DIR)", file=sys.stderr)
        return 2
    if not args.no_peers:
        ensure_peers(argv)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    out: dict[str, dict[str, dict[str, float]]] = {}
    if not args.no_m4:
        out["m4_hourly_dev"] = bench_m4(args.m4, not args.no_peers, args.limit, log)
        print(table(f"M4 Hourly dev half ({args.limit or 207} series), h = 48", out["m4_hourly_dev"]), flush=True)
    if not args.no_taxi:
        out["nyc_taxi"] = bench_taxi(args.nab, not args.no_peers, log)
        n = next(iter(out["nyc_taxi"].values()))["origins"]
        print()
        print(table(f"NAB nyc_taxi, 24 h ahead (48 x 30 min), {n:.0f} rolling origins", out["nyc_taxi"]), flush=True)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
