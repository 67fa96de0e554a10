import math

import pytest

from touchpoint_tools.bench.pipeline.stats import percentile, rate, ratio, summarize


def test_percentile_interpolates_between_closest_ranks():
    data = [10, 20, 30, 40, 50]
    assert percentile(data, 0) == 10
    assert percentile(data, 100) == 50
    assert percentile(data, 50) == 30
    assert percentile(data, 25) == 20
    assert percentile(data, 90) == pytest.approx(46.0)
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_percentile_ignores_input_order_and_handles_edges():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([], 50) is None
    assert percentile([7], 99.9) == 7.0
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_p99_of_a_uniform_sample():
    data = list(range(1, 1001))  # 1..1000
    assert percentile(data, 99) == pytest.approx(990.01)
    assert math.isclose(percentile(data, 50), 500.5)


def test_summarize_and_rates():
    s = summarize([1.0, 2.0, 3.0])
    assert s["count"] == 3 and s["min"] == 1.0 and s["max"] == 3.0 and s["p50"] == 2.0
    assert summarize([])["p99"] is None
    assert rate(100, 2.0) == 50.0
    assert rate(100, 0) is None
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None
