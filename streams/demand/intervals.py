"""Prediction intervals from a model's own out-of-sample errors, per horizon, online.

:class:`HorizonIntervals` keeps, at a few anchor horizons ``h``, the forecast the model made
``h`` buckets ago (a ring of ``h`` pending means per anchor) and, when the bucket arrives, the
scaled error ``r = (actual - forecast) / scale`` (``scale``: the model's one-step mean absolute
error). Two things are learned from it:

* the **width per horizon**: per anchor an exponentially weighted mean of ``|r|`` (a running mean
  for the first ``1/width_alpha`` errors), which follows the series up and down equally fast;
* the **shape** per anchor: four quantiles (2.5 %, 10 %, 90 %, 97.5 %) of ``r / width_h``,
  tracked with pinball-loss steps ``q += eta * (tau - 1{x < q})`` (the online quantile update of
  adaptive conformal inference, Gibbs & Candes 2021), started at a normal's. Relative to the
  width the shape is nearly stationary, so starting from the normal converges quickly; tracking
  the quantiles of ``r`` itself converged too slowly (a 97.5 % quantile that starts too wide
  comes in by ``eta * 0.025`` per step), and one shape pooled over all anchors was too light-tailed
  for the short horizons (M4 dev coverage 0.933 instead of 0.938).

Interval at horizon ``h``: ``mean + q_h * width_h * scale``, interpolated in log-horizon between
anchors. State: sum(anchors) pending means + per anchor a width, 4 quantiles and 2 counts
(367 + 63 numbers for anchors up to 168).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["ANCHORS", "TAUS", "HorizonIntervals"]

ANCHORS = (1, 2, 4, 8, 16, 24, 48, 96, 168)
TAUS = (0.025, 0.10, 0.90, 0.975)
_Z = (-1.96, -1.2816, 1.2816, 1.96)
_ETA0 = 1.0
_ETA_MIN = 0.01


def _anchors(max_horizon: int) -> tuple[int, ...]:
    out = [a for a in ANCHORS if a < max_horizon]
    out.append(max_horizon)
    return tuple(out)


class HorizonIntervals:
    """Per-horizon error widths and shapes, learned online (see module doc)."""

    def __init__(self, max_horizon: int, width_alpha: float = 0.01) -> None:
        self.anchors = _anchors(max_horizon)
        self.width_alpha = width_alpha
        self.t = 0
        self.pending = [[math.nan] * h for h in self.anchors]
        self.width = [1.0] * len(self.anchors)
        self.n = [0] * len(self.anchors)
        self.q = [[z * 1.25 for z in _Z] for _ in self.anchors]  # a normal's, in units of its mean |error|
        self.nq = [0] * len(self.anchors)

    def observe(self, actual: float, scale: float) -> None:
        """Score the forecasts made ``h`` buckets before this one (call before :meth:`record`)."""
        inv = 1.0 / scale if scale > 0 else 1.0
        for k, h in enumerate(self.anchors):
            f = self.pending[k][self.t % h]
            if f != f:  # nan: nothing pending yet
                continue
            r = (actual - f) * inv
            width = self.width[k]
            if self.n[k] >= 5:  # the shape is learned once the width means something
                x = r / width if width > 0 else 0.0
                qs = self.q[k]
                self.nq[k] += 1
                eta = max(_ETA_MIN, _ETA0 / math.sqrt(self.nq[k]))
                for i, tau in enumerate(TAUS):
                    qs[i] += eta * (tau - (1.0 if x < qs[i] else 0.0))
            n = self.n[k] = self.n[k] + 1
            self.width[k] = width + max(self.width_alpha, 1.0 / n) * (min(abs(r), 50.0 * width + 50.0) - width)

    def record(self, means: list[float], scale: float) -> None:
        """Remember this bucket's forecasts at the anchor horizons (one mean per anchor)."""
        for k, h in enumerate(self.anchors):
            self.pending[k][self.t % h] = means[k]
        self.t += 1

    def _scaled(self, k: int) -> list[float]:
        w = self.width[k]
        return [q * w for q in self.q[k]]

    def quantiles(self, h: int) -> tuple[float, float, float, float]:
        """Scaled error quantiles (2.5 %, 10 %, 90 %, 97.5 %) at horizon ``h``."""
        a = self.anchors
        if len(a) == 1 or h <= a[0]:
            out = self._scaled(0)
        elif h >= a[-1]:
            out = self._scaled(len(a) - 1)
        else:
            k = next(i for i in range(1, len(a)) if a[i] >= h)
            x = (math.log(h) - math.log(a[k - 1])) / (math.log(a[k]) - math.log(a[k - 1]))
            out = [u + x * (v - u) for u, v in zip(self._scaled(k - 1), self._scaled(k), strict=True)]
        return (out[0], out[1], out[2], out[3])

    def snapshot(self) -> dict[str, Any]:
        return {"t": self.t, "p": [[None if v != v else v for v in ring] for ring in self.pending],
                "w": self.width, "n": self.n, "q": self.q, "nq": self.nq}

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], max_horizon: int) -> HorizonIntervals:
        iv = cls(max_horizon)
        if len(data["w"]) != len(iv.anchors):
            raise ValueError("snapshot was taken with another horizon configuration")
        iv.t = int(data["t"])
        iv.pending = [[math.nan if v is None else float(v) for v in ring] for ring in data["p"]]
        iv.width = [float(v) for v in data["w"]]
        iv.n = [int(v) for v in data["n"]]
        iv.q = [[float(v) for v in qs] for qs in data["q"]]
        iv.nq = [int(v) for v in data["nq"]]
        return iv
