"""Identity rules from a TOML file: defaults reproduce the built-in rules, errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli.main import main
from streams.identity import rules_file
from streams.identity.rules import IdentityRules
from streams.identity.rules_file import RulesFileError, load_rules, parse_rules
from streams.settings import Settings, SettingsError

EXAMPLE = rules_file.__doc__.split("Example (every key shown)::", 1)[1].split("The Lua script", 1)[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_an_empty_file_is_the_built_in_rules(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "# nothing\n"))
    assert rules == IdentityRules() and rules.lua_config() == IdentityRules().lua_config()


def test_the_documented_example_parses_and_applies(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "\n".join(line[4:] for line in EXAMPLE.splitlines())))
    assert rules.limit("pos_card_id") == 3 and rules.limit("device_id") == 5
    assert rules.is_blocked(("anonymous_id", "n.a.")) and rules.is_blocked(("anonymous_id", "anonymous"))
    assert not rules.is_blocked(("anonymous_id", "undefined"))  # values replaced the default list
    assert rules.refusal(("phone", "+8613800000000")) == "blocked_value"
    assert rules.refusal(("phone", "+8695588")) == "blocked_pattern"
    assert rules.supernode_max_merges == 5 and rules.max_links("device_id") == 4 and rules.max_links("pos_card_id") == 2


def test_switches_and_overrides(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "unique_types = ['user_id']\n[supernode]\nmax_merges = false\nmax_links = false\n"
                                       "[phone]\nrequire_valid = false\nrefused_types = []\n"))
    assert rules.unique_types == frozenset({"user_id"}) and rules.supernode_max_merges is None and rules.supernode_max_links is None
    assert not rules.phone_require_valid and rules.refused_phone_types == ()


@pytest.mark.parametrize(("text", "message"), [
    ("priorty = []\n", "unknown key 'priorty'"),
    ("[limits]\ndevice_id = -1\n", "limits.device_id: expected a whole number >= 0"),
    ("[limits]\ndevice_id = 'five'\n", "limits.device_id"),
    ("[blocked]\npatterns = ['(unclosed']\n", "not a regular expression"),
    ("[blocked.types.email]\nvalues = 'x'\n", "blocked.types.email.values: expected a list of strings"),
    ("[supernode]\nmax_links = true\n", "supernode.max_links"),
    ("[phone]\nrefused_types = ['fax']\n", "refused_phone_types: unknown"),
    ("unique_types = ['order_id']\nno_merge_types = ['order_id']\n", "both unique and no-merge"),
    ("[limits\n", "not valid TOML"),
])
def test_errors_are_one_line_and_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RulesFileError) as err:
        load_rules(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="no such file"):
        load_rules(tmp_path / "nope.toml")


def test_settings_check_the_file_at_start(tmp_path: Path) -> None:
    bad = write(tmp_path, "[limits]\nx = -2\n")
    with pytest.raises(SettingsError, match="TOUCHPOINT_IDENTITY_RULES: .*limits.x"):
        Settings.from_env({"TOUCHPOINT_IDENTITY_RULES": str(bad)})
    assert Settings.from_env({"TOUCHPOINT_IDENTITY_RULES": str(write(tmp_path, ""))}).identity_rules


def test_cli_rules_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[limits]\npos_card_id = 2\n")
    assert main(["identity", "rules", "--check", str(good)]) == 0
    assert '"pos_card_id":2' in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[supernode]\nmax_links = -1\n")
    assert main(["identity", "rules", "--check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "supernode.max_links" in err


def test_parse_rules_keeps_unlisted_limits() -> None:
    rules = parse_rules({"limits": {"device_id": 1}})
    assert rules.limit("device_id") == 1 and rules.limit("email") == IdentityRules().limit("email")
