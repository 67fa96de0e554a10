"""The demo's account of the injected shifts: alert records grouped per alert and matched to shifts."""

from streams.demand.buckets import iso_utc
from touchpoint_tools.simulate.population import crisis
from touchpoint_tools.simulate.report import shift_report, stories

H = 3_600_000
T0 = 1_767_571_200_000


def rec(state: str, hour: int, key: str, direction: str, opened: int, measure: str = "orders", ratio: float = 3.0) -> dict:
    return {"state": state, "bucket_start": iso_utc(T0 + hour * H), "opened_at": iso_utc(T0 + opened * H), "key": key,
            "measure": measure, "direction": direction, "alert_id": f"{measure}/{key}:{opened}:{direction}",
            "severity": 2, "ratio": ratio}


def test_alerts_are_told_per_shift_with_their_end() -> None:
    records = [
        rec("OPEN", 8, "category_region:masks|hubei", "surge", 7), rec("RESOLVED", 33, "category_region:masks|hubei", "surge", 7),
        rec("OPEN", 13, "category:travel", "collapse", 11, "interest", 0.3),
        rec("NEW_NORMAL", 83, "category:travel", "collapse", 11, "interest", 0.31),
        rec("OPEN", 13, "category:travel", "collapse", 11, "interest", 0.3),  # at-least-once: a duplicate
        rec("OPEN", 20, "region:hubei", "surge", 19),
        rec("OPEN", 20, "category_region:masks|beijing", "surge", 19),  # masks surged in hubei only
    ]
    told = stories(records)
    assert [s.key for s in told] == ["category_region:masks|hubei", "category:travel", "category_region:masks|beijing", "region:hubei"]
    assert told[1].state == "NEW_NORMAL" and told[1].records == ["OPEN", "OPEN", "NEW_NORMAL"] and told[1].ratio == 0.31
    lines, others = shift_report(crisis(T0), told, T0 + 8 * 24 * H)
    text = "\n".join(lines)
    assert "masks in hubei x5" in text and "expected RESOLVED" in text and "RESOLVED 01-06 09:00Z" in text
    assert "travel x0.3 from 01-05 10:00Z, still on at the end: expected NEW_NORMAL" in text
    assert "category:travel interest collapse x0.31" in text and "NEW_NORMAL 01-08 11:00Z" in text
    assert "1 alerts on its keys and measures, ended: NEW_NORMAL 1" in text
    assert lines[lines.index(next(x for x in lines if x.startswith("sanitizer"))) + 1].strip() == "no alert"
    assert sorted(s.key for s in others) == ["category_region:masks|beijing", "region:hubei"]
