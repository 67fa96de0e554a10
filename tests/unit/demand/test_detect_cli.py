"""``touchpoint detect --csv``: output columns, rows going back in time, --measure, bad input (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli.main import main
from streams.demand.offline import HEADER

from .synth import series
from .test_offline import csv_lines


def _write(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _surge_csv(tmp_path: Path) -> Path:
    points = [(t, c * 5 if 5 * 168 + 40 <= i < 5 * 168 + 46 else c) for i, (t, c) in enumerate(series(7, 8))]
    return _write(tmp_path, "".join(csv_lines(points)))


def test_columns_and_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--csv", str(_surge_csv(tmp_path))]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == HEADER == "timestamp,value,alert,event,direction,expected,lower,upper"
    cells = [r.split(",") for r in rows[1:]]
    assert all(len(c) == 8 for c in cells)
    surge = cells[5 * 168 + 40]
    assert surge[2:5] == ["1", "OPEN", "surge"]
    expected, lower, upper = (float(v) for v in surge[5:8])
    assert lower <= expected <= upper < float(surge[1])  # the band was computed before the x5 row
    # alert is 1 exactly where an OPEN or ESCALATE is emitted; direction only on event rows
    for c in cells:
        assert (c[2] == "1") == ("OPEN" in c[3] or "ESCALATE" in c[3])
        assert (c[4] != "") == (c[3] != "")
    assert any(c[3] == "RESOLVED" or "NEW_NORMAL" in c[3] for c in cells)


def test_rows_back_in_time_are_skipped_counted_and_do_not_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = csv_lines(series(3, 4))
    bad = lines[:300] + [lines[250], lines[251], lines[299]] + lines[300:]  # two earlier rows and a duplicate
    path = _write(tmp_path, "".join(bad))
    assert main(["detect", "--csv", str(path)]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert len(rows) == len(bad)  # one output row per input row
    assert rows[300].endswith(",0,,,,,") and rows[302].endswith(",0,,,,,")
    assert "3 row(s) not later than the previous row skipped (first at line 301)" in captured.err


def test_measure_selects_a_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two = [line.rstrip("\n").split(",") for line in csv_lines(series(3, 5))[1:]]
    text = "timestamp,orders,units\n" + "".join(f"{t},{v},{int(v) * 3}\n" for t, v in two)
    path = _write(tmp_path, text)
    assert main(["detect", "--csv", str(path), "--measure", "units"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split(",")[1] == str(int(two[0][1]) * 3)
    assert main(["detect", "--csv", str(path)]) == 2
    assert "choose the value column with --measure" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,value\n", "no data rows"),
        ("", "no data rows"),
        ("when,value\n2014-07-01 00:00:00,1\n", "line 1: unparseable timestamp 'when'"),
        ("timestamp,value\n2014-07-01 00:00:00,abc\n", "line 2: value 'abc' is not a number"),
        ("timestamp,value\n2014-07-01 00:00:00,1,2\n", "line 2: expected 2 fields, got 3"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    assert main(["detect", "--csv", str(_write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_file_directory_and_unknown_measure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--csv", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["detect", "--csv", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    path = _write(tmp_path, "timestamp,value\n2014-07-01 00:00:00,1\n")
    assert main(["detect", "--csv", str(path), "--measure", "units"]) == 2
    assert "no column 'units'" in capsys.readouterr().err


def test_closed_stdout_ends_quietly_with_exit_0(tmp_path: Path) -> None:
    """``touchpoint detect --csv FILE | head -1``: the reader closes the pipe after one line; the
    command ends with 0 and says nothing (it used to print "Broken pipe" and exit 2)."""
    import subprocess
    import sys

    path = _write(tmp_path, "".join(csv_lines(series(20, 3))))  # ~3,400 rows: more than a pipe buffer holds
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "detect", "--csv", str(path)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().decode().strip() == HEADER
    proc.stdout.close()  # what head does after its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""
