"""NAB protocol for the demand-shift detector: one configuration, every local NAB series.

Scores the detector exactly as ``touchpoint detect --csv`` runs it (``detect_csv``;
a detection is a row whose ``alert`` is 1, i.e. where an alert opens or
escalates) over every file under ``NAB_DIR/data`` that has labels, and prints:

* per category and over all files: windows, windows hit, false-positive rows
  (scored, i.e. after the probationary period), alert rows (all rows), and the
  normalised NAB score for the three profiles (standard, reward_low_FP,
  reward_low_FN), next to the published detectors' standard scores;
* the alert rows on ``artificialNoAnomaly`` (every one is false);
* with ``--candidate``: each candidate's per-category standard score and its
  delta against the baseline (the defaults plus any ``--set``), and
  leave-one-category-out: for each category, the variant (baseline included)
  that scores best on all the *other* files, and its delta on the held-out
  category. A change that wins on one category while losing on the others
  shows up there.

Usage::

    python touchpoint_tools/bench/nab_score.py [NAB_DIR] [--files] [--jobs N] [--set k=v ...]
                              [--candidate NAME:k=v,k=v ...]

NAB_DIR defaults to $TOUCHPOINT_NAB_DIR, else ``../shared/data/nab`` next to
the repository. Label keys of absent (held-out) files are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.demand.detector import DetectorConfig  # noqa: E402
from streams.demand.nab import PROFILES, FileScore, category_of, normalise, score_file, window_indices  # noqa: E402
from streams.demand.offline import detect_csv  # noqa: E402

#: Published standard-profile scores per category on this development set (data/nab README).
PUBLISHED = {
    "ALL": {"ARTime": 71.5, "HTM": 69.7, "CAD_OSE": 67.3},
    "realAWSCloudwatch": {"ARTime": 69.5, "HTM": 73.4, "CAD_OSE": 71.5},
    "artificialWithAnomaly": {"ARTime": 70.3, "HTM": 70.2, "CAD_OSE": 73.0},
    "realKnownCause": {"ARTime": 63.9, "HTM": 55.5, "CAD_OSE": 41.8},
    "realTraffic": {"ARTime": 86.9, "HTM": 82.5, "CAD_OSE": 91.2},
}
NO_ANOMALY = "artificialNoAnomaly"
PNAMES = list(PROFILES)


def nab_dir(arg: str | None) -> Path:
    """NAB folder from the argument, the environment, or next to the repo."""
    if arg:
        return Path(arg)
    env = os.environ.get("TOUCHPOINT_NAB_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared/data/nab"


def parse_overrides(text: str) -> dict[str, Any]:
    """``k=v,k=v`` -> typed DetectorConfig overrides."""
    fields = {f.name: f for f in dataclasses.fields(DetectorConfig)}
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, _, raw = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown DetectorConfig field {key!r}")
        default = getattr(DetectorConfig(), key)
        if isinstance(default, bool):
            out[key] = raw.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            out[key] = int(raw)
        elif isinstance(default, float):
            out[key] = float(raw)
        else:
            out[key] = raw
    return out


def _score_one(task: tuple[str, str, str, dict[str, Any]]) -> tuple[str, str, dict[str, FileScore], int, str]:
    variant, root, rel, overrides = task
    path = Path(root) / "data" / rel
    windows = json.loads((Path(root) / "labels/combined_windows.json").read_text())[rel]
    with open(path, encoding="utf-8") as fh:
        stamps = [line.split(",")[0] for line in fh.read().splitlines()[1:] if line.strip()]
    error = ""
    try:
        alerts = detect_csv(path, config=DetectorConfig(**overrides))
    except ValueError as exc:  # a detector that stops on a file detects nothing in it
        alerts, error = [0] * len(stamps), str(exc)
    wins = window_indices(stamps, windows)
    scores = {name: score_file(alerts, wins, prof) for name, prof in PROFILES.items()}
    return variant, rel, scores, sum(alerts), error


def run_all(root: Path, variants: dict[str, dict[str, Any]], jobs: int) -> tuple[dict, dict, dict]:
    """Per variant, per file: scores by profile, alert-row counts, errors."""
    labels = json.loads((root / "labels/combined_windows.json").read_text())
    files = [rel for rel in labels if (root / "data" / rel).exists()]
    files.sort(key=lambda r: -(root / "data" / r).stat().st_size)  # big files first: better balance
    tasks = [(v, str(root), rel, ov) for v, ov in variants.items() for rel in files]
    if jobs > 1:
        with get_context("fork").Pool(jobs) as pool:
            out = pool.map(_score_one, tasks, chunksize=1)
    else:
        out = [_score_one(t) for t in tasks]
    scores: dict[str, dict[str, dict[str, FileScore]]] = {v: {} for v in variants}
    rows: dict[str, dict[str, int]] = {v: {} for v in variants}
    errors: dict[str, dict[str, str]] = {v: {} for v in variants}
    for v, rel, sc, n_alert, err in out:
        scores[v][rel] = sc
        rows[v][rel] = n_alert
        if err:
            errors[v][rel] = err
    return scores, rows, errors


def group_score(scores: dict[str, dict[str, FileScore]], files: list[str], profile: str) -> float | None:
    """Normalised score of a set of files (None without windows)."""
    nw = sum(scores[f][profile].windows for f in files)
    if nw == 0:
        return None
    return normalise(sum(scores[f][profile].raw for f in files), nw, PROFILES[profile])


def categories(files: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in sorted(files):
        out.setdefault(category_of(f), []).append(f)
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def print_table(label: str, scores: dict, rows: dict[str, int], show_files: bool) -> None:
    files = sorted(scores)
    cats = categories(files)
    print(f"== {label}")
    head = f"{'category / file':44s} {'files':>5s} {'win':>4s} {'hit':>4s} {'fp':>4s} {'alerts':>6s}"
    head += "".join(f" {p[:13]:>13s}" for p in PNAMES) + "   ARTime    HTM  CAD_OSE"
    print(head)

    def line(name: str, group: list[str], ref: str | None) -> str:
        s0 = [scores[f]["standard"] for f in group]
        cols = "".join(f" {_fmt(group_score(scores, group, p)):>13s}" for p in PNAMES)
        pub = PUBLISHED.get(ref or "", {})
        pubs = "".join(f" {pub.get(k, ''):>7}" for k in ("ARTime", "HTM", "CAD_OSE"))
        return (f"{name:44s} {len(group):5d} {sum(s.windows for s in s0):4d} {sum(s.detected_windows for s in s0):4d}"
                f" {sum(s.false_positives for s in s0):4d} {sum(rows[f] for f in group):6d}{cols}  {pubs}")

    for cat, group in cats.items():
        print(line(cat, group, cat))
        if show_files:
            for f in group:
                print(line("  " + f.split("/", 1)[1], [f], None))
    print(line(f"ALL {len(files)} files", files, "ALL"))
    noa = cats.get(NO_ANOMALY, [])
    print(f"alert rows on {NO_ANOMALY}: {sum(rows[f] for f in noa)} (in {len(noa)} files)")


def print_candidates(scores: dict, base: str) -> None:
    """Per-category standard deltas of each candidate, and leave-one-category-out."""
    files = sorted(scores[base])
    cats = categories(files)
    scored = [c for c in cats if group_score(scores[base], cats[c], "standard") is not None]

    def cat_score(v: str, c: str) -> float:
        s = group_score(scores[v], cats[c], "standard")
        if s is None:  # no windows: report the raw FP cost instead
            return sum(scores[v][f]["standard"].raw for f in cats[c])
        return s

    print("== candidates: standard score per category (delta vs baseline); noAnomaly column is raw FP cost")
    print(f"{'variant':28s}" + "".join(f" {c[:18]:>18s}" for c in cats) + f" {'ALL':>14s}")
    for v in scores:
        cols = []
        for c in cats:
            s, b = cat_score(v, c), cat_score(base, c)
            cols.append(f"{s:8.2f} ({s - b:+6.2f})" if v != base else f"{s:18.2f}")
        a, ab = group_score(scores[v], files, "standard"), group_score(scores[base], files, "standard")
        tot = f"{a:6.2f} ({a - ab:+5.2f})" if v != base else f"{a:14.2f}"
        print(f"{v:28s}" + "".join(f" {c:>18s}" for c in cols) + f" {tot:>14s}")
    if len(scores) < 2:
        return
    print("== leave-one-category-out: variant chosen on the other files (all-files standard score), its held-out delta")
    for c in cats:
        others = [f for f in files if category_of(f) != c]
        chosen = max(scores, key=lambda v: (group_score(scores[v], others, "standard") or 0.0, v == base))
        d = cat_score(chosen, c) - cat_score(base, c)
        unit = "raw" if c not in scored else "pts"
        print(f"  held out {c:24s} chosen {chosen:24s} held-out delta {d:+7.2f} {unit}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("nab_dir", nargs="?", help="NAB folder (data/, labels/); default $TOUCHPOINT_NAB_DIR")
    ap.add_argument("--files", action="store_true", help="also print every file's row")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--set", default="", help="baseline DetectorConfig overrides, k=v,k=v")
    ap.add_argument("--candidate", action="append", default=[], help="NAME:k=v,k=v (repeatable)")
    args = ap.parse_args(argv)
    root = nab_dir(args.nab_dir)
    if not (root / "labels/combined_windows.json").exists():
        print(f"nab_score: {root}: no labels/combined_windows.json", file=sys.stderr)
        return 2
    base = parse_overrides(args.set)
    variants = {"baseline": base}
    for cand in args.candidate:
        name, _, spec = cand.partition(":")
        variants[name] = {**base, **parse_overrides(spec)}
    t0 = time.perf_counter()
    scores, rows, errors = run_all(root, variants, max(1, min(args.jobs, 2)))
    elapsed = time.perf_counter() - t0
    for v in variants:
        if v == "baseline" or args.files:
            print_table(f"{v} {variants[v] or '(defaults)'}", scores[v], rows[v], args.files)
        for rel, err in errors[v].items():
            print(f"  {v}: {rel}: detector stopped: {err}")
    print_candidates(scores, "baseline")
    print(f"scored {len(variants)} variant(s) x {len(scores['baseline'])} files in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
