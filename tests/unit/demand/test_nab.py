"""NAB scorer on tiny hand-computed cases."""

import math

import pytest

from streams.demand.nab import PROFILES, normalise, probationary_period, scaled_sigmoid, score_file, window_indices

STD = PROFILES["standard"]


def sig(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_scaled_sigmoid_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0


def test_probation_is_capped() -> None:
    assert probationary_period(1000) == 150
    assert probationary_period(10320) == 750


def test_detection_at_window_start_scores_full_tp() -> None:
    det = [0] * 100
    det[40] = 1
    s = score_file(det, [(40, 49)], STD, probation=0)
    assert s.raw == pytest.approx(1.0)
    assert normalise(s.raw, 1, STD) == pytest.approx(100.0)


def test_detection_at_window_end_and_only_first_counts() -> None:
    det = [0] * 100
    det[49] = 1
    s = score_file(det, [(40, 49)], STD, probation=0)
    assert s.raw == pytest.approx(sig(-0.1) / sig(-1.0))
    det[45] = 1  # earlier detection wins; the later one is free
    s = score_file(det, [(40, 49)], STD, probation=0)
    assert s.raw == pytest.approx(sig(-0.5) / sig(-1.0))
    assert s.false_positives == 0


def test_false_positives_before_and_after_window() -> None:
    det = [0] * 100
    det[10] = 1  # before any window: -A_FP
    det[59] = 1  # 10 rows after a width-10 window: sigma(10/9) * A_FP
    s = score_file(det, [(40, 49)], STD, probation=0)
    assert s.fp_score == pytest.approx(-0.11 + sig(10 / 9) * 0.11)
    assert s.fn_score == -1.0
    assert s.raw == pytest.approx(-0.11 + sig(10 / 9) * 0.11 - 1.0)
    lowfp = score_file(det, [(40, 49)], PROFILES["reward_low_FP_rate"], probation=0)
    assert lowfp.fp_score == pytest.approx(2 * s.fp_score)


def test_null_and_perfect_and_probation() -> None:
    wins = [(20, 29), (60, 69)]
    null = score_file([0] * 100, wins, STD, probation=0)
    assert normalise(null.raw, 2, STD) == 0.0
    perfect = [0] * 100
    perfect[20] = perfect[60] = 1
    for name, prof in PROFILES.items():
        assert normalise(score_file(perfect, wins, prof, probation=0).raw, 2, prof) == pytest.approx(100.0), name
    # Detections inside the probationary period are ignored.
    early = [0] * 100
    early[5] = 1
    assert score_file(early, wins, STD, probation=10).false_positives == 0
    lowfn = PROFILES["reward_low_FN_rate"]
    assert normalise(score_file([0] * 100, wins, lowfn, probation=0).raw, 2, lowfn) == 0.0


def test_window_indices_from_timestamps() -> None:
    ts = [f"2015-01-01 00:0{i}:00" for i in range(8)]
    assert window_indices(ts, [["2015-01-01 00:02:00.000000", "2015-01-01 00:04:00.000000"]]) == [(2, 4)]


def test_category_of() -> None:
    from streams.demand.nab import category_of

    assert category_of("realTraffic/speed_6005.csv") == "realTraffic"
    assert category_of("nyc_taxi.csv") == ""


def test_protocol_script_on_a_tiny_nab_folder(tmp_path, capsys) -> None:
    """touchpoint_tools/bench/nab_score.py: per category, all files, noAnomaly alert rows, candidates and LOCO."""
    import importlib.util
    import json
    from pathlib import Path

    from .synth import series
    from .test_offline import csv_lines

    surge = [(t, c * 6 if 4 * 168 + 30 <= i < 4 * 168 + 36 else c) for i, (t, c) in enumerate(series(6, 2))]
    files = {"catA/surge.csv": surge, "catB/quiet.csv": series(6, 3), "artificialNoAnomaly/flat.csv": series(6, 4)}
    labels = {}
    for rel, points in files.items():
        path = tmp_path / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = csv_lines(points)
        path.write_text("".join(lines))
        labels[rel] = []
    stamps = [line.split(",")[0] for line in csv_lines(surge)[1:]]
    labels["catA/surge.csv"] = [[stamps[4 * 168 + 20] + ".000000", stamps[4 * 168 + 60] + ".000000"]]
    labels["catB/quiet.csv"] = [[stamps[5 * 168] + ".000000", stamps[5 * 168 + 20] + ".000000"]]
    labels["heldOut/absent.csv"] = [[stamps[10], stamps[20]]]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/combined_windows.json").write_text(json.dumps(labels))
    spec = importlib.util.spec_from_file_location("nab_score", Path(__file__).parents[3] / "touchpoint_tools/bench/nab_score.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(tmp_path), "--jobs", "1", "--candidate", "strict:min_excess=1e9"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("catA", "catB", "ALL"))}
    assert rows["catA"][1:4] == ["1", "1", "1"]  # files, windows, hit
    assert rows["catB"][3] == "0"  # its window holds no shift: missed
    assert "alert rows on artificialNoAnomaly" in out and "heldOut" not in out
    assert "held out catA" in out and "held out catB" in out
    strict = next(line for line in out.splitlines() if line.startswith("strict"))
    assert "(-" in strict  # a detector that never opens loses the catA window: a negative delta
