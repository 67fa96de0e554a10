"""Numenta Anomaly Benchmark (NAB v1.1) scorer for binary detections.

Written from the published rules (Lavin & Ahmad 2015; NAB README):

* each labelled window ``[l, r]`` (row indices, inclusive, width ``W``) is worth
  ``A_TP * sigma(-(r - i + 1) / W) / sigma(-1)`` for its *first* detection at
  row ``i``; later detections inside the window are free; a window with no
  detection costs ``-A_FN``;
* a detection outside every window costs ``-A_FP`` before the first window and
  ``A_FP * sigma((i - r) / (W - 1))`` after the closest preceding window
  (about 0 right after it, about ``-A_FP`` one window width later);
* rows in the probationary period (``min(floor(0.15 N), 750)``) are ignored;
* ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` and ``sigma(y) = -1`` for ``y > 3``;
* normalised score ``100 * (S - S_null) / (S_perfect - S_null)`` with
  ``S_null = -A_FN * windows`` and ``S_perfect = A_TP * windows``.

NAB normally sweeps a detection threshold per detector over the corpus; this
scorer takes binary detections (one fixed configuration) instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Profile",
    "PROFILES",
    "FileScore",
    "scaled_sigmoid",
    "probationary_period",
    "window_indices",
    "score_file",
    "normalise",
    "normalise_many",
    "category_of",
]


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: weights of the cost matrix (all positive)."""

    name: str
    a_tp: float = 1.0
    a_fp: float = 0.11
    a_fn: float = 1.0
    a_tn: float = 1.0  # unused by NAB's scorer (true negatives score 0)


#: NAB ``config/profiles.json``.
PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0),
}


@dataclass(frozen=True)
class FileScore:
    """Raw NAB score of one file under one profile, with its counts."""

    raw: float
    windows: int
    detected_windows: int
    false_positives: int
    tp_score: float
    fp_score: float
    fn_score: float


def scaled_sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: 2/(1+e^{5y}) - 1, and -1 beyond y > 3."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probationary_period(n_rows: int, fraction: float = 0.15) -> int:
    """Number of leading rows NAB ignores: min(floor(0.15 N), 0.15 * 5000)."""
    return int(min(math.floor(fraction * n_rows), fraction * 5000))


def window_indices(
    timestamps: Sequence[str], windows: Sequence[Sequence[str]]
) -> list[tuple[int, int]]:
    """Map ``[start, end]`` window timestamps to inclusive row-index pairs.

    Timestamps are compared as ``YYYY-MM-DD HH:MM:SS`` strings (the fractional
    ``.ffffff`` suffix of NAB window bounds is ignored), which sort
    chronologically. Windows that contain no row are dropped.
    """
    ts = [t.strip()[:19] for t in timestamps]
    out: list[tuple[int, int]] = []
    for start, end in windows:
        s, e = start.strip()[:19], end.strip()[:19]
        rows = [i for i, t in enumerate(ts) if s <= t <= e]
        if rows:
            out.append((rows[0], rows[-1]))
    out.sort()
    return out


def score_file(
    detections: Sequence[int | bool],
    windows: Sequence[tuple[int, int]],
    profile: Profile,
    probation: int | None = None,
) -> FileScore:
    """Score binary per-row detections of one file against row-index windows."""
    n = len(detections)
    if probation is None:
        probation = probationary_period(n)
    wins = sorted(windows)
    in_window = [-1] * n
    for w, (lo, hi) in enumerate(wins):
        for i in range(max(lo, 0), min(hi, n - 1) + 1):
            in_window[i] = w
    max_tp = scaled_sigmoid(-1.0)
    first_hit: dict[int, int] = {}
    fp_score = 0.0
    fps = 0
    for i, flag in enumerate(detections):
        if not flag or i < probation:
            continue
        w = in_window[i]
        if w >= 0:
            first_hit.setdefault(w, i)
            continue
        fps += 1
        preceding = [k for k, (_, hi) in enumerate(wins) if hi < i]
        if not preceding:
            fp_score -= profile.a_fp
            continue
        lo, hi = wins[preceding[-1]]
        width = hi - lo + 1
        # A one-row window has no defined slope: treat the FP as far away.
        y = (i - hi) / (width - 1) if width > 1 else 4.0
        fp_score += scaled_sigmoid(y) * profile.a_fp
    tp_score = 0.0
    fn_score = 0.0
    for w, (lo, hi) in enumerate(wins):
        if w in first_hit:
            width = hi - lo + 1
            y = -(hi - first_hit[w] + 1) / width
            tp_score += scaled_sigmoid(y) * profile.a_tp / max_tp
        else:
            fn_score -= profile.a_fn
    return FileScore(
        raw=tp_score + fp_score + fn_score,
        windows=len(wins),
        detected_windows=len(first_hit),
        false_positives=fps,
        tp_score=tp_score,
        fp_score=fp_score,
        fn_score=fn_score,
    )


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    """Normalised NAB score: 100 (S - S_null) / (S_perfect - S_null)."""
    null = -profile.a_fn * n_windows
    perfect = profile.a_tp * n_windows
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def normalise_many(scores: Mapping[str, FileScore], profile: Profile) -> float:
    """Normalised total over several files' raw scores."""
    raw = sum(s.raw for s in scores.values())
    n = sum(s.windows for s in scores.values())
    return normalise(raw, n, profile)


def category_of(rel: str) -> str:
    """NAB category of a data path such as ``realTraffic/speed_6005.csv``."""
    return rel.replace("\\", "/").split("/", 1)[0] if "/" in rel.replace("\\", "/") else ""
