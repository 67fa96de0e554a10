"""What happened to the injected demand shifts: alert records grouped per alert and matched to the
scenario's shifts (pure; ``touchpoint demo`` prints it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from touchpoint_tools.simulate.population import FOREVER_MS, Scenario, Shift

__all__ = ["AlertStory", "stories", "shift_report"]


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _short(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%MZ")


@dataclass
class AlertStory:
    """One alert from OPEN to its last record."""

    alert_id: str
    key: str
    measure: str
    direction: str
    opened_ms: int
    published_ms: int
    state: str = "OPEN"
    ended_ms: int | None = None
    ratio: float = 0.0
    severity: int = 1
    records: list[str] = field(default_factory=list)

    def line(self) -> str:
        end = "still open" if self.ended_ms is None else f"{self.state} {_short(self.ended_ms)}"
        return (f"{self.key} {self.measure} {self.direction} x{self.ratio:.2f} severity {self.severity}: "
                f"shift from {_short(self.opened_ms)}, alerted {_short(self.published_ms)}, {end}")


def stories(alerts: Iterable[dict[str, Any]]) -> list[AlertStory]:
    """Alert records (any order, duplicates allowed) grouped per alert id, in order of opening."""
    out: dict[str, AlertStory] = {}
    for a in sorted(alerts, key=lambda a: a["bucket_start"]):
        s = out.get(a["alert_id"])
        if s is None:
            s = out[a["alert_id"]] = AlertStory(a["alert_id"], a["key"], a.get("measure", "events"), a["direction"],
                                                _ms(a["opened_at"]), _ms(a["bucket_start"]))
        s.records.append(a["state"])
        s.severity = max(s.severity, int(a.get("severity", 1)))
        s.ratio = float(a.get("ratio") or 0.0)
        if a["state"] in ("RESOLVED", "NEW_NORMAL"):
            s.state, s.ended_ms = a["state"], _ms(a["bucket_start"])
    return sorted(out.values(), key=lambda s: (s.opened_ms, s.key, s.measure))


def _matches(story: AlertStory, shift: Shift) -> bool:
    dim, _, value = story.key.partition(":")
    if (story.direction == "surge") != (shift.factor > 1):
        return False
    if dim == "category" or dim == "product":
        hit = value == shift.category or value.startswith(shift.category + "-")
        return hit if shift.region is None or dim == "category" else False
    if dim == "category_region":
        cat, _, reg = value.partition("|")
        return cat == shift.category and (shift.region is None or reg == shift.region)
    return False


def shift_report(scenario: Scenario, alerts: list[AlertStory], end_ms: int, max_lines: int = 8) -> tuple[list[str], list[AlertStory]]:
    """One paragraph per injected shift (what was injected, what the alerts on its category said,
    the verdict), and the alerts no injected shift explains."""
    lines: list[str] = []
    used: set[str] = set()
    for shift in scenario.shifts:
        persistent = shift.end_ms >= FOREVER_MS or shift.end_ms > end_ms
        where = f" in {shift.region}" if shift.region else ""
        span = f"from {_short(shift.start_ms)}, " + ("still on at the end" if persistent else f"until {_short(shift.end_ms)}")
        want = "NEW_NORMAL (held 3+ days)" if persistent and end_ms - shift.start_ms > 3.5 * 86_400_000 else (
            "still open (not yet 3 days)" if persistent else "RESOLVED")
        mine = [s for s in alerts if _matches(s, shift) and shift.start_ms - 3_600_000 <= s.opened_ms < min(shift.end_ms, end_ms)]
        used.update(s.alert_id for s in mine)
        lines.append(f"{shift.category}{where} x{shift.factor:g} {span}: expected {want}")
        if not mine:
            lines.append("    no alert")
            continue
        ends: dict[str, int] = {}
        for s in mine:
            ends[s.state if s.ended_ms is not None else "still open"] = ends.get(s.state if s.ended_ms is not None else "still open", 0) + 1
        lines.append(f"    {len(mine)} alerts on its keys and measures, ended: " + ", ".join(f"{k} {v}" for k, v in sorted(ends.items())))
        # The category-level alerts first (what a planner reads), then the finer keys.
        rank = {"category": 0, "category_region": 1, "product": 2}
        for s in sorted(mine, key=lambda s: (rank.get(s.key.partition(":")[0], 3), s.opened_ms))[:max_lines]:
            lines.append(f"    {s.line()}")
        if len(mine) > max_lines:
            lines.append(f"    ... {len(mine) - max_lines} more")
    others = [s for s in alerts if s.alert_id not in used]
    return lines, others
