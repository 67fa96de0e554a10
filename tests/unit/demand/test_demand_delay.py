"""The delay probe (touchpoint_tools/bench/demand_delay.py): what held each late OPEN back."""

from __future__ import annotations

import re

import pytest

from streams.demand.lifecycle import AlertLifecycle
from streams.demand.lifecycle_config import LifecycleConfig
from touchpoint_tools.bench import demand_delay


def test_the_blocker_follows_the_volume_rule_in_order() -> None:
    lc = AlertLifecycle("k", config=LifecycleConfig(min_excess=12.0, judge="baseline"))
    assert demand_delay.blocker(lc) == "not open"
    lc.alert_id, lc.direction, lc.buckets, lc.sx, lc.se, lc.top = "a", -1, 3, 20.0, 40.0, 10.0
    assert demand_delay.blocker(lc) == "beyond largest"  # 20 short, 10 without the largest bucket
    lc.pre = [10.0, 20.0, 4.0, 20.0, 2.0]  # a lead-in of 10 more: 30 short, 20 without the largest
    assert demand_delay.blocker(lc) == "other"  # every condition of the orders rule holds: not blocked by it
    lc.published = True
    assert demand_delay.blocker(lc) == "published"


def test_every_late_shift_gets_one_cause(capsys: pytest.CaptureFixture[str]) -> None:
    assert demand_delay.main(["--seeds", "7", "--volumes", "medium,high", "--late", "0-500"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"(\d+) shifts, (\d+) detected, (\d+) published 0-500 h after onset", out)
    assert m is not None, out
    shifts, detected, late = map(int, m.groups())
    assert shifts == 24 and late == detected > 0
    table = dict(re.findall(r"^\| ([a-z0-9 %]+) \| (\d+) \|$", out, re.M))
    assert sum(map(int, table.values())) == late  # one cause per diagnosed shift
    assert re.search(r"within 3 h: \d+ of \d+ detected", out)


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert demand_delay.main(["--volumes", "huge"]) == 2
    assert "demand_delay:" in capsys.readouterr().err
