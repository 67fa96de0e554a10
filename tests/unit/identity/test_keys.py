"""One module owns the Redis key layout (issue 20 item 5): the Lua scripts and the Python adapter
name no key prefix of their own; streams/identity/keys.py gives them all."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from streams.identity import keys as K

PREFIXES = sorted({p.rstrip(":") for p in K.LUA_NAMES.values()})
# a quoted key prefix: 'id:', "pm:", ... or the one key without a colon, 'seq'
_HAND_WRITTEN = re.compile(r"""(['"])""" + K.SEQ + r"""\1|['"](?:""" + "|".join(PREFIXES) + "):")


def hand_written_prefixes(text: str) -> list[str]:
    return [m.group(0) for m in _HAND_WRITTEN.finditer(text)]


def scripts() -> dict[str, str]:
    lua = resources.files("streams.identity").joinpath("lua")
    return {p.name: p.read_text(encoding="utf-8") for p in lua.iterdir() if p.name.endswith(".lua")}


def test_the_check_finds_a_hand_written_prefix() -> None:
    assert hand_written_prefixes("redis.call('GET', ns .. 'id:' .. f)") == ["'id:"]
    assert hand_written_prefixes('call("INCR", ns .. "seq")') == ['"seq"']
    assert hand_written_prefixes("call('HINCRBY', K_PM .. pid, 'n:' .. t, 1)") == []  # a hash field, not a key


@pytest.mark.parametrize("name", sorted(scripts()))
def test_no_script_names_a_key_itself(name: str) -> None:
    text = scripts()[name]
    assert hand_written_prefixes(text) == []
    assert text.count(K.PLACEHOLDER) == 1
    assert set(re.findall(r"\bK_[A-Z]+\b", text)) <= set(K.LUA_NAMES)


def test_the_python_side_names_no_key_either() -> None:
    root = Path(K.__file__).parent
    for path in sorted(root.glob("*.py")):
        if path.name == "keys.py":
            continue
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"""["'](?:""" + "|".join(PREFIXES) + "):", text)
        assert found == [], (path.name, found)


def test_the_prelude_defines_every_prefix_under_the_namespace() -> None:
    line = K.lua_prelude()
    for name, prefix in K.LUA_NAMES.items():
        assert name in line and f"ns .. '{prefix}'" in line
    assert K.Keys("shop").id("user_id:u1") == "shop:id:user_id:u1"
    with pytest.raises(ValueError):
        K.lua_source("no placeholder")
