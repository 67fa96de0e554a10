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
