"""``touchpoint forecast --csv FILE --horizon H`` through the CLI: output contract and bad input."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.cli.main import main
from streams.demand.forecast_offline import forecast_series
from tests.unit.demand.synth import HOUR_MS, series

ROOT = Path(__file__).resolve().parents[3]


def write_csv(path: Path, points, header: str = "timestamp,value") -> Path:
    lines = [header] if header else []
    for t, v in points:
        lines.append(f"{datetime.fromtimestamp(t / 1000, tz=UTC):%Y-%m-%d %H:%M:%S},{v}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["forecast", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_horizon_rows_after_the_last_row(tmp_path: Path, capsys) -> None:
    pts = series(3, 2)
    path = write_csv(tmp_path / "s.csv", pts)
    code, out, err = run(capsys, "--csv", str(path), "--horizon", "48")
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0] == "timestamp,forecast,lo80,hi80,lo95,hi95"
    assert len(rows) == 49
    last = datetime.fromtimestamp(pts[-1][0] / 1000, tz=UTC)
    for h, row in enumerate(rows[1:], start=1):
        stamp, mean, lo80, hi80, lo95, hi95 = row.split(",")
        expected = datetime.fromtimestamp((pts[-1][0] + h * HOUR_MS) / 1000, tz=UTC)
        assert stamp == f"{expected:%Y-%m-%d %H:%M:%S}" and expected > last
        m, a, b, c, d = (float(x) for x in (mean, lo80, hi80, lo95, hi95))
        assert c <= a <= m <= b <= d
        assert c >= 0  # counts


def test_cli_is_the_benchmarked_model(tmp_path: Path, capsys) -> None:
    pts = series(2, 8)
    path = write_csv(tmp_path / "s.csv", pts)
    code, out, _ = run(capsys, "--csv", str(path), "--horizon", "24")
    assert code == 0
    ref = forecast_series([t for t, _ in pts], [float(v) for _, v in pts], 24)
    got = [float(r.split(",")[1]) for r in out.splitlines()[1:]]
    assert got == pytest.approx([p[1] for p in ref], rel=1e-9)


def test_thirty_minute_spacing_is_inferred(tmp_path: Path, capsys) -> None:
    pts = [(t // 2, v) for t, v in series(1, 3)]  # the same counts every 30 min
    pts = [(pts[0][0] + i * 1_800_000, v) for i, (_, v) in enumerate(pts)]
    path = write_csv(tmp_path / "s.csv", pts)
    code, out, _ = run(capsys, "--csv", str(path), "--horizon", "3")
    assert code == 0
    stamps = [r.split(",")[0] for r in out.splitlines()[1:]]
    first = datetime.fromtimestamp((pts[-1][0] + 1_800_000) / 1000, tz=UTC)
    assert stamps[0] == f"{first:%Y-%m-%d %H:%M:%S}" and len(stamps) == 3


@pytest.mark.parametrize(
    ("content", "horizon", "needle"),
    [
        (None, "4", "no such file"),
        ("DIR", "4", "is a directory"),
        ("when,what\n2024-01-01 00:00:00,1\n", "4", "unparseable timestamp"),
        ("timestamp,value\n2024-01-01 00:00:00,abc\n", "4", "not a number"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,2\n", "4", "too few rows"),
        ("timestamp,value\n", "4", "too few rows"),
        ("GOOD", "0", "at least 1"),
        ("GOOD", "-3", "at least 1"),
        ("GOOD", "two", "whole number"),
        ("GOOD", "169", "between 1 and 168"),
        ("timestamp,value,extra\n2024-01-01 00:00:00,1,2\n", "4", "choose the value column"),
        # rows that do not advance are left out (as `detect` does), leaving too few
        ("timestamp,value\n" + "2024-01-01 00:00:00,1\n" * 5, "4", "too few rows"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,nan\n", "4", "not finite"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, content, horizon, needle) -> None:
    path = tmp_path / "in.csv"
    if content == "DIR":
        path.mkdir()
    elif content == "GOOD":
        write_csv(path, series(1, 1))
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "--csv", str(path), "--horizon", horizon)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("touchpoint forecast: ") and needle in lines[0], err


@pytest.mark.parametrize("header", ["timestamp,value", "ds,y", "\ufefftimestamp,value", ""])
def test_usual_headers_and_a_byte_order_mark(tmp_path: Path, capsys, header: str) -> None:
    path = write_csv(tmp_path / "s.csv", series(1, 4), header=header)
    code, out, err = run(capsys, "--csv", str(path), "--horizon", "2")
    assert code == 0, err
    assert len(out.splitlines()) == 3


def test_as_a_process_from_stdin() -> None:
    text = "timestamp,value\n" + "".join(f"2024-01-01 {h:02d}:00:00,{h % 5}\n" for h in range(24))
    proc = subprocess.run([sys.executable, "-m", "streams.cli.main", "forecast", "--csv", "-", "--horizon", "2"],
                          input=text, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("2024-01-02 00:00:00,")
