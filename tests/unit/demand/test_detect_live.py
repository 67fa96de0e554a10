"""``detect_csv(live=...)`` / ``touchpoint detect --live MEASURE``: a CSV judged exactly as the live
stage's monitor judges the same buckets (the configuration the scenario benchmark runs)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.cli.main import main
from streams.demand.monitor import DemandMonitor
from streams.demand.offline import detect_csv
from streams.demand.stage_config import StageConfig
from touchpoint_tools.simulate.demand_scenarios import HOUR_MS, START_MS, make_set

STAGE = StageConfig(bucket_s=3600, timezone="Asia/Shanghai")


def _csv(counts: list[int]) -> list[str]:
    # Stamps with an offset: unambiguous whatever zone naive stamps would be read in.
    stamp = lambda h: datetime.fromtimestamp((START_MS + h * HOUR_MS) / 1000, tz=UTC).isoformat()  # noqa: E731
    return ["timestamp,orders\n", *(f"{stamp(h)},{n}\n" for h, n in enumerate(counts))]


def _monitor_events(key: str, counts: list[int], measure: str) -> list[str]:
    mon = DemandMonitor(key, "", STAGE.detector_config(), STAGE.lifecycle_config(measure), measure)
    return ["+".join(r.state for r in mon.update(START_MS + h * HOUR_MS, n)[1]) for h, n in enumerate(counts)]


@pytest.mark.parametrize("kind", ["surge_transient", "collapse_persistent", "holiday"])
def test_live_judgement_matches_the_stage_monitor(kind: str) -> None:
    ks = next(k for k in make_set(7, per_kind=1, controls=0, volumes=("medium",)) if k.kind == kind)
    out = io.StringIO()
    detect_csv(_csv(ks.counts), out, live=(STAGE, "orders"))
    events = [row.split(",")[3] for row in out.getvalue().splitlines()[1:]]
    expected = _monitor_events(ks.key, ks.counts, "orders")
    assert any(expected), kind  # the shift raised records, so the comparison says something
    assert events == expected


def test_live_judgement_differs_from_the_detectors_own() -> None:
    # A transient surge: the detector's judgement opens and resolves on its own alert; the live one
    # holds the volume rule and the frozen baseline, so the two columns are not the same.
    ks = next(k for k in make_set(7, per_kind=1, controls=0, volumes=("low",)) if k.kind == "surge_transient")
    live, plain = io.StringIO(), io.StringIO()
    detect_csv(_csv(ks.counts), live, live=(STAGE, "orders"), measure="orders")
    detect_csv(_csv(ks.counts), plain, measure="orders")
    assert live.getvalue() != plain.getvalue()


def test_cli_live_needs_a_known_measure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.csv"
    path.write_text("".join(_csv([3, 4, 5] * 20)), encoding="utf-8")
    assert main(["detect", "--csv", str(path), "--live", "visits"]) == 2
    assert "--live 'visits': expected one of orders, units, revenue, interest" in capsys.readouterr().err
    assert main(["detect", "--csv", str(path), "--live", "orders"]) == 0
    assert capsys.readouterr().out.count("\n") == 61
