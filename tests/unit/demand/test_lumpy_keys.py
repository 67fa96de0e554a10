"""The lumpy-keys probe (touchpoint_tools/bench/lumpy_keys.py): its output line and its bad-input exit."""

from __future__ import annotations

import pytest

from touchpoint_tools.bench import lumpy_keys


def test_the_probe_prints_the_true_and_learned_noise_and_the_false_opens(capsys: pytest.CaptureFixture[str]) -> None:
    assert lumpy_keys.main(["--keys", "3", "--days", "4"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("3 keys x 4 days, 0.4 orders/h x 4.5 units: true a 2.38, learned a day ")
    assert "surge OPENs after day 2 (all false)" in line and "per 100 key-days" in line


def test_a_basket_of_one_unit_is_a_plain_poisson_count() -> None:
    assert lumpy_keys.true_overdispersion(2.0, 1.0) == 0.0


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert lumpy_keys.main(["--basket", "0.5"]) == 2
    assert "lumpy_keys:" in capsys.readouterr().err
