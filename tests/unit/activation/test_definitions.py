"""The definitions file: the example loads, every mistake is one line naming the entry, and the
expression language evaluates as documented (and runs nothing else)."""

import pytest

from streams.activation.definitions import DefinitionsError, load, parse
from streams.activation.expr import BUILTINS, ExprError, compile_expr


def test_the_documented_example_loads():
    d = load("docs/activation.example.toml")
    assert {t.name for t in d.traits} >= {"orders_90d", "recency_score", "first_channel"}
    assert d.audience("repeat_mask_buyers_hubei").purpose == "marketing"
    assert d.max_window_days == 90
    assert load("").traits == ()


@pytest.mark.parametrize("text, says", [
    ('[traits.x]\nkind = "count"\nof = "clicks"\nwindow_days = 7', "traits.x.of"),
    ('[traits.x]\nkind = "count"\nof = "orders"\nwindow_days = 0', "traits.x.window_days"),
    ('[traits.x]\nkind = "count"\nof = "orders"\nwhere = { colour = "red" }', "traits.x.where.colour"),
    ('[traits.x]\nkind = "distinct"\nof = "category"', "needs a window"),
    ('[traits.x]\nkind = "score"\nof = "nope"\nthresholds = [1]', "traits.x.of"),
    ('[traits.x]\nkind = "sum"\nof = "revenue"\ncurrency = "yuan"', "traits.x.currency"),
    ('[traits.Bad]\nkind = "count"\nof = "orders"', "traits.Bad"),
    ('[audiences.a]\nwhen = "x > 1"\npurpose = "marketing"', "unknown name 'x'"),
    ('[audiences.a]\nwhen = "event_count > 1"', "audiences.a.purpose"),
    ('[audiences.a]\nwhen = "__import__(\'os\').system(\'true\')"\npurpose = "m"', "Call is not allowed"),
    ('[audiences.a]\nwhen = "event_count >"\npurpose = "m"', "syntax error"),
    ('[audiences.a]\nwhen = "event_count.__class__ == 1"\npurpose = "m"', "unknown scope"),
    ("[traits\n", "not valid TOML"),
    ('[segments.a]\nwhen = "1"', "unknown top-level"),
])
def test_every_mistake_is_one_line_naming_where(text, says):
    with pytest.raises(DefinitionsError) as err:
        parse(text, "defs.toml")
    message = str(err.value)
    assert says in message and "\n" not in message and message.startswith("defs.toml: ")


def test_unreadable_file_names_the_variable(tmp_path):
    with pytest.raises(DefinitionsError, match="TOUCHPOINT_TRAITS="):
        load(str(tmp_path / "missing.toml"))


def run(text, env):
    fn, _ = compile_expr(text, frozenset(BUILTINS) | {"a", "b", "s"})
    return fn(lambda name: env.get(name))


def test_expression_semantics():
    env = {"a": 3, "b": None, "s": "hubei", "trait.region": "hubei", "consent.marketing": True, "channel.app": 0}
    assert run("a >= 2 and s == 'hubei'", env)
    assert run("a > 1 > 0", env) and not run("a > 5 or s != 'hubei'", env)
    assert not run("b >= 0", env) and not run("b < 0", env)  # none orders against nothing
    assert run("b == none", env) and run("consent.marketing == true", env)
    assert run("s in ['hubei', 'beijing']", env) and run("a not in [1, 2]", env)
    assert not run("s > 2", env)  # a string never orders against a number
    assert run("not channel.app", env) and run("a > -1", env)
    assert run("trait.region == s", env)
    with pytest.raises(ExprError):
        compile_expr("a + 1 > 2", frozenset({"a"}))
    with pytest.raises(ExprError):
        compile_expr("[x for x in a]", frozenset({"a"}))
