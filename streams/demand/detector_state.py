"""Persistence of the demand-shift detector: a JSON-safe, fixed-size snapshot and its restore.

Used by :meth:`streams.demand.detector.DemandDetector.snapshot` and
:meth:`~streams.demand.detector.DemandDetector.from_snapshot`. Snapshots of earlier
versions still load (missing parts start empty or are derived, as noted inline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .baseline import OD_REF, TIERS
from .novelty import DailyPeaks

if TYPE_CHECKING:
    from .detector import DemandDetector

__all__ = ["snapshot", "restore", "lag1_rho"]


def lag1_rho(ac: list[float]) -> float:
    """Lag-1 correlation of standardised residuals from ``[last z, E[z z-1], E[z^2]]``, in [0, 0.95]."""
    return min(max(ac[1] / max(ac[2], 1e-9), 0.0), 0.95)


def snapshot(det: DemandDetector) -> dict[str, Any]:
    """JSON-safe, fixed-size state of ``det`` (config not included)."""
    out: dict[str, Any] = {
        "v": 1,
        "week_mean": list(det.week_mean),
        "week_n": list(det.week_n),
        "day_mean": list(det.day_mean),
        "day_n": list(det.day_n),
        "level": det.level,
        "level_n": det.level_n,
        "rdev": dict(det.rdev),
        "od": {t: list(v) for t, v in det.od.items()},
        "integral": det.integral,
        "ev": [det.ev_up, det.ev_dn],
        "run": [list(det.run_up), list(det.run_dn)],
        "alert": [det.direction, det.normal_run, det.cooldown, det.in_alert],
        "alert_sums": [det.alert_obs, det.alert_exp],
        "cal": [list(det.cal_up), list(det.cal_dn), det.cal_n],
        "ac": list(det.ac),
        "lik": [list(det.lik[0]), list(det.lik[1]), list(det.lik_s)],
        "n": det.n,
        "last_ts_ms": det.last_ts_ms,
        "first_ts_ms": det.first_ts_ms,
    }
    if det.daily is not None:  # non-count keys only
        out["daily"] = det.daily.snapshot()
    return out


def restore(det: DemandDetector, data: dict[str, Any]) -> DemandDetector:
    """Load :func:`snapshot` output into ``det``, a fresh detector of the same config."""
    if len(data["week_mean"]) != det.week_slots or len(data["day_mean"]) != det.day_slots:
        raise ValueError("snapshot slot layout does not match the config")
    det.week_mean = [float(v) for v in data["week_mean"]]
    det.week_n = [int(v) for v in data["week_n"]]
    det.day_mean = [float(v) for v in data["day_mean"]]
    det.day_n = [int(v) for v in data["day_n"]]
    det.level = float(data["level"])
    det.level_n = int(data["level_n"])
    det.rdev = {t: float(data["rdev"][t]) for t in TIERS}
    od = data.get("od")
    if od is not None:
        det.od = {t: [float(v) for v in od[t]] for t in TIERS}
    else:
        # Older snapshot: start the overdispersion from the relative deviation, worth one
        # bucket at the level's moment weight.
        m = max(det.level, 1.0)
        w = (m / (1.0 + OD_REF * m)) ** 2
        det.od = {t: [(1.25 * det.rdev[t]) ** 2 * w, w] for t in TIERS}
    det.integral = bool(data["integral"])
    det.ev_up, det.ev_dn = (float(v) for v in data["ev"])
    if "ac" in data:
        det.ac = [float(v) for v in data["ac"]]
    rho = lag1_rho(det.ac)
    # Older snapshots: runs without a bucket count or a starting correlation.
    det.run_up = ([float(v) for v in data["run"][0]] + [0.0, 0.0])[:4] + [rho]
    det.run_dn = ([float(v) for v in data["run"][1]] + [0.0, 0.0])[:4] + [rho]
    if len(data["run"][0]) >= 5:
        det.run_up[4] = float(data["run"][0][4])
        det.run_dn[4] = float(data["run"][1][4])
    det.direction, det.normal_run, det.cooldown, det.in_alert = (int(v) for v in data["alert"])
    det.alert_obs, det.alert_exp = (float(v) for v in data["alert_sums"])
    cal = data.get("cal")
    if cal is not None:
        det.cal_up = [float(v) for v in cal[0]]
        det.cal_dn = [float(v) for v in cal[1]]
        det.cal_n = float(cal[2])
    lik = data.get("lik")
    if lik is not None:  # older snapshots: the likelihood starts empty
        det.lik = [([float(v) for v in lik[j]] + [0.0, 0.0])[:6] for j in (0, 1)]
        det.lik_s = [float(v) for v in lik[2]]
    daily = data.get("daily")
    if daily is not None:  # absent for counts and older snapshots (the daily peaks start empty)
        det.daily = DailyPeaks(det.day_slots, max(det.config.daily_novelty_days, 1),
                               det.config.daily_novelty_spread, det.config.daily_novelty_margin)
        det.daily.restore(daily)
    det.n = int(data["n"])
    det.last_ts_ms = None if data["last_ts_ms"] is None else int(data["last_ts_ms"])
    first = data.get("first_ts_ms")  # older snapshots: warmed up
    det.first_ts_ms = int(first) if first is not None else (0 if det.n else None)
    return det
