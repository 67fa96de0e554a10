"""M4 measures of touchpoint_tools/bench/forecast_metrics.py on hand-computed cases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "touchpoint_tools" / "bench"))

from forecast_metrics import mase_scale, score, seasonal_naive  # noqa: E402


def test_mase_smape_coverage_msis_by_hand() -> None:
    history = [0.0, 2.0, 0.0, 2.0, 4.0]  # m = 2: |0-0|, |2-2|, |4-0| -> scale 4/3
    assert mase_scale(history, 2) == pytest.approx(4 / 3)
    actual, mean = [2.0, 4.0], [1.0, 4.0]
    lo, hi = [1.5, 4.5], [3.0, 5.0]  # the second actual is 0.5 below its interval
    s = score(history, actual, mean, lo, hi, lo, hi, m=2)
    assert s["mase"] == pytest.approx((0.5) / (4 / 3))
    assert s["smape"] == pytest.approx((200 * 1 / 3 + 0) / 2)
    assert s["cov95"] == 0.5 and s["cov80"] == 0.5
    # MSIS: widths 1.5 + 0.5, plus 40 x 0.5 for the miss, over h = 2, scaled.
    assert s["msis"] == pytest.approx(((1.5 + 0.5 + 40 * 0.5) / 2) / (4 / 3))


def test_seasonal_naive_repeats_the_last_season() -> None:
    mean, lo95, hi95, _, _ = seasonal_naive([1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 4, m=3)
    assert mean == [1.0, 2.0, 3.0, 1.0]
    assert lo95 == mean and hi95 == mean  # a perfectly periodic history has no error
