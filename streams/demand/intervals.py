"""Prediction intervals from a model's own out-of-sample errors, per horizon, online.

:class:`HorizonIntervals` keeps, at a few anchor horizons ``h``, the forecast the model made
``h`` buckets ago (a ring of ``h`` pending means per anchor) and, when the bucket arrives, the
scaled error ``r = (actual - forecast) / scale``. Per anchor it tracks four quantiles of ``r``
(2.5 %, 10 %, 90 %, 97.5 %) with pinball-loss steps, ``q += eta * (tau - 1{r < q})`` (the online
quantile update of adaptive conformal inference, Gibbs & Candes 2021): a quantile that is passed
too often moves out, one never reached moves in, so coverage tracks its target even when the
series changes. The step shrinks as ``1/sqrt(n)`` down to a floor, so a short series converges
and a long one keeps adapting. Between anchors the quantiles interpolate in log-horizon.

State: sum(anchors) pending means + 4 quantiles and one count per anchor (367 + 45 numbers for
anchors up to 168).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["ANCHORS", "TAUS", "HorizonIntervals"]

ANCHORS = (1, 2, 4, 8, 16, 24, 48, 96, 168)
TAUS = (0.025, 0.10, 0.90, 0.975)
_Z = (-1.96, -1.2816, 1.2816, 1.96)
_ETA0 = 1.0
_ETA_MIN = 0.03


def _anchors(max_horizon: int) -> tuple[int, ...]:
    out = [a for a in ANCHORS if a < max_horizon]
    out.append(max_horizon)
    return tuple(out)


class HorizonIntervals:
    """Per-horizon error quantiles learned from pending forecasts (see module doc)."""

    def __init__(self, max_horizon: int) -> None:
        self.anchors = _anchors(max_horizon)
        self.t = 0
        self.pending = [[math.nan] * h for h in self.anchors]
        # Start from a normal with the one-step MAE as scale, widening like sqrt(h) up to x3.
        self.q = [[z * 1.25 * min(math.sqrt(h), 3.0) for z in _Z] for h in self.anchors]
        self.n = [0] * len(self.anchors)

    def observe(self, actual: float, scale: float) -> None:
        """Score the forecasts made ``h`` buckets before this one (call before :meth:`record`)."""
        inv = 1.0 / scale if scale > 0 else 1.0
        for k, h in enumerate(self.anchors):
            f = self.pending[k][self.t % h]
            if f != f:  # nan: nothing pending yet
                continue
            r = (actual - f) * inv
            n = self.n[k] = self.n[k] + 1
            eta = max(_ETA_MIN, _ETA0 / math.sqrt(n))
            qs = self.q[k]
            for i, tau in enumerate(TAUS):
                qs[i] += eta * (tau - (1.0 if r < qs[i] else 0.0))

    def record(self, means: list[float], scale: float) -> None:
        """Remember this bucket's forecasts at the anchor horizons (one mean per anchor)."""
        for k, h in enumerate(self.anchors):
            self.pending[k][self.t % h] = means[k]
        self.t += 1

    def quantiles(self, h: int) -> tuple[float, float, float, float]:
        """Scaled error quantiles (2.5 %, 10 %, 90 %, 97.5 %) at horizon ``h``."""
        a = self.anchors
        if h <= a[0]:
            q = self.q[0]
        elif h >= a[-1]:
            q = self.q[-1]
        else:
            k = next(i for i in range(1, len(a)) if a[i] >= h)
            lo, hi = a[k - 1], a[k]
            x = (math.log(h) - math.log(lo)) / (math.log(hi) - math.log(lo))
            q = [u + x * (v - u) for u, v in zip(self.q[k - 1], self.q[k], strict=True)]
        return (q[0], q[1], q[2], q[3])

    def snapshot(self) -> dict[str, Any]:
        return {"t": self.t, "p": [[None if v != v else v for v in ring] for ring in self.pending],
                "q": self.q, "n": self.n}

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], max_horizon: int) -> HorizonIntervals:
        iv = cls(max_horizon)
        if len(data["q"]) != len(iv.anchors):
            raise ValueError("snapshot was taken with another horizon configuration")
        iv.t = int(data["t"])
        iv.pending = [[math.nan if v is None else float(v) for v in ring] for ring in data["p"]]
        iv.q = [[float(v) for v in qs] for qs in data["q"]]
        iv.n = [int(v) for v in data["n"]]
        return iv
