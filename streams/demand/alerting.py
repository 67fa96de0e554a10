"""Optional forwarding of demand alert records to an Alertmanager (API v2, ``POST /api/v2/alerts``).

The alerts topic stays the record of truth; forwarding is best effort (a failure is counted and
logged, never retried forever), so a down Alertmanager cannot stall the demand agent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from streams.observability.metrics import Metrics

__all__ = ["AlertmanagerForwarder", "to_alertmanager"]

log = logging.getLogger(__name__)

# Alertmanager resolves an alert nobody re-sends after its endsAt: an open demand alert is held
# this long past its latest bucket; later ESCALATE/RESOLVED/NEW_NORMAL records update it.
_HOLD = timedelta(hours=6)


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_alertmanager(alert: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """One alert record as an Alertmanager API v2 ``postableAlert``.

    The alert's identity (its label set) is the demand alert id, so OPEN, ESCALATE and the final
    RESOLVED/NEW_NORMAL records of one shift update the same Alertmanager alert.
    """
    now = now or datetime.now(UTC)
    expected = alert.get("expected")
    ratio = f" (x{alert['observed'] / expected:.1f})" if expected else ""
    ends = now if alert["state"] in ("RESOLVED", "NEW_NORMAL") else now + _HOLD
    return {
        "labels": {
            "alertname": "DemandShift",
            "alert_id": alert["alert_id"],
            "dimension": alert["dimension"],
            "key": alert["key"],
            "measure": alert.get("measure", "events"),
            "direction": alert["direction"],
            "severity": str(alert["severity"]),
        },
        "annotations": {
            "summary": f"{alert['direction']} of {alert.get('measure', 'events')} on {alert['key']}: observed {alert['observed']:g} vs expected "
                       f"{expected if expected is None else round(expected, 1)}{ratio}",
            "state": alert["state"],
            "bucket_start": alert["bucket_start"],
        },
        "startsAt": _iso(_parse(alert["opened_at"])) if alert.get("opened_at") else _iso(now),
        "endsAt": _iso(ends),
    }


class AlertmanagerForwarder:
    """Posts alert records to ``{base_url}/api/v2/alerts`` with one shared aiohttp session."""

    def __init__(self, base_url: str, metrics: Metrics, timeout_s: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.metrics = metrics
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def forward(self, alerts: list[dict[str, Any]]) -> bool:
        """Post the records; True on a 2xx answer. Failures are counted and logged only."""
        if not alerts:
            return True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = [to_alertmanager(a) for a in alerts]
        try:
            async with self._session.post(self.url, json=body) as resp:
                ok = 200 <= resp.status < 300
                if not ok:
                    log.warning("alertmanager answered %s: %s", resp.status, (await resp.text())[:200])
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alertmanager unreachable at %s: %s", self.url, exc)
            ok = False
        self.metrics.demand_alerts_forwarded.labels("ok" if ok else "failed").inc(len(alerts))
        return ok

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
