"""NAB score of the demand-shift detector (one fixed configuration) on the local NAB subset.

Usage: .venv/bin/python bench/nab_score.py [NAB_DIR]
NAB_DIR defaults to $TOUCHPOINT_NAB_DIR, else ../shared/data/nab next to the repo.
Only files present under NAB_DIR/data are scored (label keys of absent,
held-out files are skipped).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.demand.nab import PROFILES, FileScore, normalise, score_file, window_indices  # noqa: E402
from streams.demand.offline import detect_csv  # noqa: E402


def nab_dir(argv: list[str]) -> Path:
    """NAB folder from the argument, the environment, or next to the repo."""
    if len(argv) > 1:
        return Path(argv[1])
    env = os.environ.get("TOUCHPOINT_NAB_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared/data/nab"


def run(root: Path) -> dict[str, dict[str, FileScore]]:
    """Per profile, per file raw scores."""
    windows = json.loads((root / "labels/combined_windows.json").read_text())
    results: dict[str, dict[str, FileScore]] = {p: {} for p in PROFILES}
    for rel in sorted(windows):
        path = root / "data" / rel
        if not path.exists():
            continue
        alerts = detect_csv(path)
        with open(path, encoding="utf-8") as fh:
            stamps = [line.split(",")[0] for line in fh.read().splitlines()[1:] if line.strip()]
        wins = window_indices(stamps, windows[rel])
        for name, prof in PROFILES.items():
            results[name][rel] = score_file(alerts, wins, prof)
    return results


def main(argv: list[str]) -> int:
    root = nab_dir(argv)
    results = run(root)
    names = list(PROFILES)
    print(f"{'file':40s} {'win':>3s} {'hit':>3s} {'fp':>3s} " + " ".join(f"{n:>18s}" for n in names))
    files = sorted(next(iter(results.values())))
    for rel in files:
        s0 = results[names[0]][rel]
        cols = " ".join(f"{normalise(results[n][rel].raw, s0.windows, PROFILES[n]):18.1f}" for n in names)
        print(f"{rel:40s} {s0.windows:3d} {s0.detected_windows:3d} {s0.false_positives:3d} {cols}")
    totals = []
    for n in names:
        raw = sum(s.raw for s in results[n].values())
        nw = sum(s.windows for s in results[n].values())
        totals.append(normalise(raw, nw, PROFILES[n]))
    nw = sum(s.windows for s in results[names[0]].values())
    hits = sum(s.detected_windows for s in results[names[0]].values())
    fps = sum(s.false_positives for s in results[names[0]].values())
    print(f"{'TOTAL':40s} {nw:3d} {hits:3d} {fps:3d} " + " ".join(f"{t:18.1f}" for t in totals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
