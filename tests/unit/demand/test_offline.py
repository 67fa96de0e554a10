"""detect_csv: output format, causality and CSV errors."""

import io
from datetime import UTC

import pytest

from streams.demand.offline import WARMUP_ROWS, detect_csv, infer_bucket_s

from .synth import series


def csv_lines(points) -> list[str]:
    from datetime import datetime

    lines = ["timestamp,value\n"]
    for t, c in points:
        stamp = datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp},{c}\n")
    return lines


def test_output_format_and_alerts() -> None:
    points = series(7, 8)
    points = [(t, c * 5 if 5 * 168 + 40 <= i < 5 * 168 + 46 else c) for i, (t, c) in enumerate(points)]
    out = io.StringIO()
    alerts = detect_csv(csv_lines(points), out)
    rows = out.getvalue().splitlines()
    assert rows[0] == "timestamp,value,alert,event,direction,expected,lower,upper"
    assert len(rows) == len(points) + 1 and rows[1].endswith(",0,,,,,")
    assert alerts[5 * 168 + 40] == 1
    assert sum(alerts[: WARMUP_ROWS + 1]) == 0


def test_prefix_output_is_prefix_of_output() -> None:
    points = series(6, 9)
    points = [(t, int(c * 0.2) if 4 * 168 <= i < 4 * 168 + 30 else c) for i, (t, c) in enumerate(points)]
    lines = csv_lines(points)
    full = detect_csv(lines)
    assert sum(full) > 0
    for n in (5, WARMUP_ROWS + 1, WARMUP_ROWS + 2, 200, 4 * 168 + 3, 4 * 168 + 20, len(points) - 1):
        assert detect_csv(lines[: n + 1]) == full[:n]


def test_bucket_inference() -> None:
    assert infer_bucket_s([0, 1_800_000, 3_600_000, 9_000_000]) == 1800


@pytest.mark.parametrize(
    "text, msg",
    [
        ("timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:30:00\n", "line 3"),
        ("timestamp,value\n2014-07-01 00:00:00,abc\n", "line 2: value"),
        ("timestamp,value\nnot-a-time,1\n", "line 2: unparseable timestamp"),
        ("timestamp,value\n2014-07-01 00:00:00,nan\n", "not finite"),
    ],
)
def test_bad_csv_raises_with_line_number(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        detect_csv(io.StringIO(text))


def test_prefix_gives_the_same_output_rows_in_every_column() -> None:
    """Causal: the output rows of any prefix are the first rows of the full output, all columns."""
    points = series(6, 9)
    points = [(t, int(c * 0.2) if 4 * 168 <= i < 4 * 168 + 30 else c) for i, (t, c) in enumerate(points)]
    lines = csv_lines(points)
    full = io.StringIO()
    detect_csv(lines, full)
    full_rows = full.getvalue().splitlines()
    assert any(",OPEN," in r for r in full_rows) and any("RESOLVED" in r or "NEW_NORMAL" in r for r in full_rows)
    for n in (WARMUP_ROWS + 2, 4 * 168 + 5, 4 * 168 + 31, len(points) - 3):
        part = io.StringIO()
        detect_csv(lines[: n + 1], part)
        assert part.getvalue().splitlines() == full_rows[: n + 1]


def test_band_is_computed_before_the_row() -> None:
    """expected/lower/upper of a row do not depend on the row's own value."""
    points = series(4, 3)
    i = 3 * 168 + 12
    a, b = io.StringIO(), io.StringIO()
    detect_csv(csv_lines(points[: i + 1]), a)
    detect_csv(csv_lines(points[:i] + [(points[i][0], points[i][1] * 10)]), b)
    row_a, row_b = a.getvalue().splitlines()[-1].split(","), b.getvalue().splitlines()[-1].split(",")
    assert row_a[5:] == row_b[5:] and row_a[5] != ""
    assert row_b[2:5] == ["1", "OPEN", "surge"]


def test_non_count_series_and_stats() -> None:
    from streams.demand.offline import SeriesStats

    text = "timestamp,value\n" + "".join(f"2014-07-01 {h:02d}:{m:02d}:00,{20.5 + (m % 3) * 0.1}\n" for h in range(10) for m in range(0, 60, 5))
    stats = SeriesStats()
    out = io.StringIO()
    alerts = detect_csv(io.StringIO(text), out, stats=stats)
    assert stats.rows == 120 and stats.back_in_time == 0 and len(alerts) == 120
    assert float(out.getvalue().splitlines()[-1].split(",")[6]) < 20.6  # lower band not clipped at 0
