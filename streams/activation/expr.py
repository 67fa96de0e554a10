"""The audience expression language: a small, safe subset of Python expression syntax.

An audience's ``when`` is parsed with the standard library's :mod:`ast` and compiled into a tree of
closures over a whitelist of node types (it is never ``eval``-ed). Grammar::

    expr    := expr "and" expr | expr "or" expr | "not" expr | "(" expr ")" | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)*
    operand := NAME | SCOPE "." NAME | NUMBER | STRING | true | false | none | "[" constant, ... "]"
    SCOPE   := trait | consent | channel

Names: a computed trait of the definitions file, or ``event_count``, ``order_count``, ``funnel``.
``trait.X`` is the profile trait X (last value by event time), ``consent.X`` the consent flag X
(true/false, none when never given), ``channel.X`` the number of events on channel X (0 if none).
An ordering comparison with ``none`` on either side is false (a person without the data is not in).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["compile_expr", "ExprError", "BUILTINS", "SCOPES", "Env"]

BUILTINS = ("event_count", "order_count", "funnel")
SCOPES = ("trait", "consent", "channel")

Env = Mapping[str, Any]  # "name" -> value; "trait.X" / "consent.X" / "channel.X" looked up by the caller's env
Fn = Callable[[Callable[[str], Any]], Any]


class ExprError(ValueError):
    """An expression that cannot be compiled; the message says where."""


_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_CONST_TYPES = (int, float, str, bool, type(None))


def compile_expr(text: str, known: frozenset[str]) -> tuple[Fn, frozenset[str]]:
    """Compile ``text``; return ``(fn, names)`` where ``fn(lookup) -> bool`` and ``names`` are the
    names it reads (``known`` = computed trait names plus :data:`BUILTINS`)."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("empty expression")
    if len(text) > 2000:
        raise ExprError("expression longer than 2000 characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    names: set[str] = set()
    fn = _node(tree.body, known, names)
    return (lambda lookup: bool(fn(lookup))), frozenset(names)


def _node(node: ast.AST, known: frozenset[str], names: set[str]) -> Fn:
    if isinstance(node, ast.BoolOp):
        parts = [_node(v, known, names) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda env: all(p(env) for p in parts)
        return lambda env: any(p(env) for p in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _node(node.operand, known, names)
        return lambda env: not inner(env)
    if isinstance(node, ast.Compare):
        return _compare(node, known, names)
    return _operand(node, known, names)


def _compare(node: ast.Compare, known: frozenset[str], names: set[str]) -> Fn:
    left = _operand(node.left, known, names)
    steps: list[tuple[Callable[[Any, Any], bool], Fn]] = []
    for op, right in zip(node.ops, node.comparators, strict=True):
        steps.append((_op(op), _operand(right, known, names)))

    def run(env: Callable[[str], Any]) -> bool:
        a = left(env)
        for test, right_fn in steps:
            b = right_fn(env)
            if not test(a, b):
                return False
            a = b
        return True
    return run


def _op(op: ast.cmpop) -> Callable[[Any, Any], bool]:
    if isinstance(op, ast.Eq):
        return lambda a, b: a == b
    if isinstance(op, ast.NotEq):
        return lambda a, b: a != b
    if isinstance(op, ast.In):
        return lambda a, b: _contains(b, a)
    if isinstance(op, ast.NotIn):
        return lambda a, b: not _contains(b, a)
    fn = _ORDER.get(type(op))
    if fn is None:
        raise ExprError(f"operator {type(op).__name__} is not allowed")

    def ordered(a: Any, b: Any) -> bool:
        if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
            return False
        if isinstance(a, str) != isinstance(b, str):
            return False  # a string never orders against a number
        return bool(fn(a, b))
    return ordered


def _contains(container: Any, item: Any) -> bool:
    return isinstance(container, (list, tuple, str)) and item is not None and (
        item in container if not isinstance(container, str) else isinstance(item, str) and item in container)


def _operand(node: ast.AST, known: frozenset[str], names: set[str]) -> Fn:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _CONST_TYPES):
            raise ExprError(f"constant {node.value!r} is not allowed")
        value = node.value
        return lambda env: value
    if isinstance(node, ast.Name):
        name = {"true": "True", "false": "False", "none": "None"}.get(node.id)
        if name is not None:
            value = {"True": True, "False": False, "None": None}[name]
            return lambda env: value
        if node.id not in known:
            raise ExprError(f"unknown name {node.id!r} (a computed trait, {', '.join(BUILTINS)}, or trait.X / consent.X / channel.X)")
        names.add(node.id)
        key = node.id
        return lambda env: env(key)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id not in SCOPES:
            raise ExprError(f"unknown scope {node.value.id!r}; use one of {', '.join(SCOPES)}")
        key = f"{node.value.id}.{node.attr}"
        names.add(key)
        return lambda env: env(key)
    if isinstance(node, (ast.List, ast.Tuple)):
        values = []
        for elt in node.elts:
            if not isinstance(elt, ast.Constant) or not isinstance(elt.value, _CONST_TYPES):
                raise ExprError("a list may hold constants only")
            values.append(elt.value)
        frozen = tuple(values)
        return lambda env: frozen
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
        neg = -node.operand.value
        return lambda env: neg
    raise ExprError(f"{type(node).__name__} is not allowed here (names, constants, comparisons, and/or/not)")
