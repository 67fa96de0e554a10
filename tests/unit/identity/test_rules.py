"""Unit tests of the pure identity rules (blocked values, priority order, Lua config)."""

from __future__ import annotations

import pytest

from streams.identity.rules import IdentityRules

RULES = IdentityRules()


@pytest.mark.parametrize("value", [
    "", "null", "NULL", "None", "nil", "undefined", "anonymous", "Unknown", "0", "-1", "n/a", "NA", "test",
    "guest", "000000", "00000000-0000-0000-0000-000000000000", "[object Object]", "0000", "aaaaaaa",
    "11111111", '"null"', "''", "   ",
])
def test_default_blocked_values(value: str) -> None:
    assert RULES.is_blocked(("anonymous_id", value))


@pytest.mark.parametrize("value", ["u-42", "7", "a1b2c3", "0123456789abcdef", "+8613800138000", "testuser", "aaab"])
def test_real_values_are_not_blocked(value: str) -> None:
    assert not RULES.is_blocked(("user_id", value))


def test_custom_blocklist_replaces_defaults() -> None:
    rules = IdentityRules(blocked_values=("bad",), blocked_patterns=(r"x+",))
    assert rules.is_blocked(("device_id", "BAD")) and rules.is_blocked(("device_id", "xxx"))
    assert not rules.is_blocked(("device_id", "null"))


def test_prepare_sorts_by_priority_keeps_event_order_within_type_and_splits_blocked() -> None:
    ids = (("anonymous_id", "a2"), ("order_id", "o1"), ("device_id", "null"), ("anonymous_id", "a1"),
           ("custom_kind", "c"), ("email", "e"), ("user_id", "u"))
    linkable, blocked = RULES.prepare(ids)
    assert linkable == [("user_id", "u"), ("email", "e"), ("anonymous_id", "a2"), ("anonymous_id", "a1"),
                        ("custom_kind", "c"), ("order_id", "o1")]
    assert blocked == [("device_id", "null")]


def test_limits_and_defaults() -> None:
    assert RULES.limit("device_id") == 5 and RULES.limit("anonymous_id") == 50
    assert RULES.limit("something_new") == RULES.default_limit


def test_invalid_rules_are_rejected() -> None:
    with pytest.raises(ValueError):
        IdentityRules(supernode_max_merges=-1)
    with pytest.raises(ValueError):
        IdentityRules(unique_types=frozenset({"order_id"}), no_merge_types=frozenset({"order_id"}))
    with pytest.raises(ValueError):
        IdentityRules(limits={"device_id": -1})


def test_lua_config_is_a_table_literal() -> None:
    cfg = IdentityRules(supernode_max_merges=None).lua_config()
    assert cfg.startswith("{") and cfg.endswith("}")
    assert 'unique_list={"member_id","user_id"}' in cfg and "supernode=-1" in cfg
    assert '["device_id"]=5' in cfg
