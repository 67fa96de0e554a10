"""NAB score of the demand-shift detector (one fixed configuration) on the local NAB subset.

Usage: .venv/bin/python bench/nab_score.py [--loo] [NAB_DIR]
NAB_DIR defaults to $TOUCHPOINT_NAB_DIR, else ../shared/data/nab next to the repo.
--loo also prints the totals with each file left out (a change that wins only
because of one file shows up there).
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
    args = [a for a in argv[1:] if not a.startswith("--")]
    if args:
        return Path(args[0])
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
    print(total_line("TOTAL", results, names, files))
    if "--loo" in argv[1:]:
        for rel in files:
            print(total_line(f"without {rel}", results, names, [f for f in files if f != rel], digits=2))
    return 0


def total_line(
    label: str, results: dict[str, dict[str, FileScore]], names: list[str], files: list[str], digits: int = 1
) -> str:
    """One row: normalised totals over ``files`` for every profile, with window/hit/FP counts."""
    totals = []
    for n in names:
        raw = sum(results[n][f].raw for f in files)
        nw = sum(results[n][f].windows for f in files)
        totals.append(normalise(raw, nw, PROFILES[n]))
    first = results[names[0]]
    nw = sum(first[f].windows for f in files)
    hits = sum(first[f].detected_windows for f in files)
    fps = sum(first[f].false_positives for f in files)
    return f"{label:40s} {nw:3d} {hits:3d} {fps:3d} " + " ".join(f"{t:18.{digits}f}" for t in totals)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
