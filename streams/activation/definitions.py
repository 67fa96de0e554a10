"""The activation definitions file (``TOUCHPOINT_TRAITS``): computed traits and audiences, in TOML.

Read once at start with the standard library's :mod:`tomllib` and validated completely; any problem
is a :class:`DefinitionsError` whose message is one line naming the file, the entry and the field.
The format is documented in docs/activation.md; in short::

    [traits.mask_orders_90d]
    kind = "count"            # count | sum | distinct | first | last | days_since | score
    of = "orders"             # what is counted/summed/... (see OF below)
    window_days = 90          # sliding window in whole UTC days (count/sum/distinct)
    where = { category = "masks", region = ["hubei"] }

    [audiences.repeat_mask_buyers_hubei]
    when = "mask_orders_90d >= 2 and trait.region == 'hubei'"
    purpose = "marketing"     # consent flag required to be a member; "none" for suppression lists
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.activation.expr import BUILTINS, ExprError, compile_expr
from streams.settings import SettingsError

__all__ = ["TraitDef", "AudienceDef", "Definitions", "DefinitionsError", "load", "parse", "KINDS", "OF", "WHERE_FIELDS", "MAX_WINDOW_DAYS"]

MAX_WINDOW_DAYS = 365
KINDS = ("count", "sum", "distinct", "first", "last", "days_since", "score")
# What each kind may aggregate.
OF: dict[str, tuple[str, ...]] = {
    "count": ("events", "orders"),
    "sum": ("units", "revenue"),
    "distinct": ("category", "channel", "region", "event", "store", "product"),
    "first": ("channel", "category", "region", "event", "store", "revenue"),
    "last": ("channel", "category", "region", "event", "store", "revenue"),
    "days_since": ("events", "orders"),
}
WHERE_FIELDS = ("category", "channel", "region", "event", "type", "store")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DefinitionsError(SettingsError):
    """The definitions file cannot be used; the message is one line."""


@dataclass(frozen=True, slots=True)
class TraitDef:
    name: str
    kind: str
    of: str = ""
    window_days: int | None = None        # None = lifetime (count/sum) / not windowed
    where: tuple[tuple[str, frozenset[str]], ...] = ()
    currency: str = "CNY"                 # revenue: only orders in this currency are summed
    source: str = ""                      # score: the trait it scores
    thresholds: tuple[float, ...] = ()    # score: ascending cut points
    higher_is_better: bool = True         # score: False for recency (fewer days = better)
    description: str = ""

    @property
    def windowed(self) -> bool:
        return self.window_days is not None

    def matches(self, event: dict[str, Any], categories: frozenset[str] | tuple[str, ...]) -> bool:
        """Does ``event`` (a ``Touchpoint.to_dict()``) pass this trait's ``where``?"""
        for name, allowed in self.where:
            if name == "category":
                if not any(c in allowed for c in categories):
                    return False
            elif event.get(name) not in allowed:
                return False
        return True


@dataclass(frozen=True, slots=True)
class AudienceDef:
    name: str
    when: str
    purpose: str                          # consent flag that must be true; "none" = no consent needed
    description: str = ""
    reads: frozenset[str] = frozenset()   # names the expression reads
    test: Any = field(default=None, compare=False, repr=False)  # compiled: test(lookup) -> bool

    @property
    def time_dependent_names(self) -> frozenset[str]:
        return self.reads


@dataclass(frozen=True, slots=True)
class Definitions:
    traits: tuple[TraitDef, ...] = ()
    audiences: tuple[AudienceDef, ...] = ()
    path: str = ""
    destinations: tuple[Any, ...] = ()    # streams.activation.destinations.DestinationDef

    def trait(self, name: str) -> TraitDef:
        for t in self.traits:
            if t.name == name:
                return t
        raise KeyError(name)

    def audience(self, name: str) -> AudienceDef:
        for a in self.audiences:
            if a.name == name:
                return a
        raise KeyError(name)

    @property
    def max_window_days(self) -> int:
        return max((t.window_days for t in self.traits if t.window_days), default=0)

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary (``touchpoint audience list --json``)."""
        return {
            "traits": [{"name": t.name, "kind": t.kind, "of": t.of or None, "window_days": t.window_days,
                        "where": {k: sorted(v) for k, v in t.where}, "description": t.description} for t in self.traits],
            "audiences": [{"name": a.name, "when": a.when, "purpose": a.purpose, "description": a.description} for a in self.audiences],
        }


EMPTY = Definitions()


def load(path: str) -> Definitions:
    """Read and validate the file at ``path`` (empty path = no definitions)."""
    if not path:
        return EMPTY
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionsError(f"TOUCHPOINT_TRAITS={path}: cannot read: {exc.strerror or exc}") from None
    return parse(text, path)


def parse(text: str, path: str = "<definitions>") -> Definitions:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionsError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"traits", "audiences", "destinations"}
    if unknown:
        raise DefinitionsError(f"{path}: unknown top-level table(s) {', '.join(sorted(unknown))}; expected [traits.NAME], [audiences.NAME], [destinations.NAME]")
    traits_doc = _table(doc.get("traits", {}), path, "traits")
    traits: list[TraitDef] = []
    for name, body in traits_doc.items():
        traits.append(_trait(path, name, body))
    names = {t.name for t in traits}
    for t in traits:
        if t.kind == "score":
            if t.source not in names or t.source == t.name:
                raise DefinitionsError(f"{path}: traits.{t.name}.of: {t.source!r} is not another computed trait")
            if traits_by(traits, t.source).kind == "score":
                raise DefinitionsError(f"{path}: traits.{t.name}.of: a score cannot score another score")
    known = frozenset(names) | frozenset(BUILTINS)
    audiences: list[AudienceDef] = []
    for name, body in _table(doc.get("audiences", {}), path, "audiences").items():
        audiences.append(_audience(path, name, body, known))
    from streams.activation.destinations import parse_destinations

    destinations = parse_destinations(doc.get("destinations", {}), path, {a.name: a.purpose for a in audiences}, DefinitionsError)
    return Definitions(tuple(traits), tuple(audiences), path, destinations)


def traits_by(traits: list[TraitDef], name: str) -> TraitDef:
    return next(t for t in traits if t.name == name)


def _table(value: Any, path: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DefinitionsError(f"{path}: {where} must be a table")
    return value


def _fields(path: str, where: str, body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise DefinitionsError(f"{path}: {where} must be a table")
    extra = set(body) - allowed
    if extra:
        raise DefinitionsError(f"{path}: {where}: unknown field(s) {', '.join(sorted(extra))}; allowed: {', '.join(sorted(allowed))}")
    return body


def _trait(path: str, name: str, body: Any) -> TraitDef:
    at = f"traits.{name}"
    if not _NAME.match(name) or name in BUILTINS:
        raise DefinitionsError(f"{path}: {at}: a name is lower-case letters, digits and '_' (not {', '.join(BUILTINS)})")
    b = _fields(path, at, body, {"kind", "of", "window_days", "where", "currency", "thresholds", "higher_is_better", "description"})
    kind = b.get("kind")
    if kind not in KINDS:
        raise DefinitionsError(f"{path}: {at}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    of = b.get("of")
    description = str(b.get("description", ""))
    if kind == "score":
        thresholds = b.get("thresholds")
        if (not isinstance(thresholds, list) or not thresholds or len(thresholds) > 9
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in thresholds)
                or sorted(thresholds) != thresholds):
            raise DefinitionsError(f"{path}: {at}.thresholds: 1 to 9 ascending numbers")
        hib = b.get("higher_is_better", True)
        if not isinstance(hib, bool):
            raise DefinitionsError(f"{path}: {at}.higher_is_better: true or false")
        if "window_days" in b or "where" in b:
            raise DefinitionsError(f"{path}: {at}: a score has no window_days or where (it scores the trait named in 'of')")
        return TraitDef(name, kind, source=str(of), thresholds=tuple(float(x) for x in thresholds), higher_is_better=hib, description=description)
    if of not in OF[kind]:
        raise DefinitionsError(f"{path}: {at}.of: for kind {kind!r} expected one of {', '.join(OF[kind])}, got {of!r}")
    window = b.get("window_days")
    if window is not None:
        if kind not in ("count", "sum", "distinct"):
            raise DefinitionsError(f"{path}: {at}.window_days: only count, sum and distinct have a window")
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW_DAYS:
            raise DefinitionsError(f"{path}: {at}.window_days: a whole number of days from 1 to {MAX_WINDOW_DAYS}")
    elif kind == "distinct":
        raise DefinitionsError(f"{path}: {at}.window_days: a distinct count needs a window (it keeps the values per day)")
    currency = b.get("currency", "CNY")
    if not isinstance(currency, str) or not re.match(r"^[A-Z]{3}$", currency):
        raise DefinitionsError(f"{path}: {at}.currency: an ISO 4217 code such as CNY")
    return TraitDef(name, kind, of, window, _where(path, at, b.get("where", {})), currency, description=description)


def _where(path: str, at: str, where: Any) -> tuple[tuple[str, frozenset[str]], ...]:
    if not isinstance(where, dict):
        raise DefinitionsError(f"{path}: {at}.where: a table such as {{ category = \"masks\" }}")
    out = []
    for key, value in sorted(where.items()):
        if key not in WHERE_FIELDS:
            raise DefinitionsError(f"{path}: {at}.where.{key}: filter on one of {', '.join(WHERE_FIELDS)}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v for v in values):
            raise DefinitionsError(f"{path}: {at}.where.{key}: a string or a list of strings")
        out.append((key, frozenset(values)))
    return tuple(out)


def _audience(path: str, name: str, body: Any, known: frozenset[str]) -> AudienceDef:
    at = f"audiences.{name}"
    if not _NAME.match(name):
        raise DefinitionsError(f"{path}: {at}: a name is lower-case letters, digits and '_'")
    b = _fields(path, at, body, {"when", "purpose", "description"})
    purpose = b.get("purpose")
    if not isinstance(purpose, str) or not purpose or len(purpose) > 64:
        raise DefinitionsError(f"{path}: {at}.purpose: the consent flag members must have given (e.g. \"marketing\"), or \"none\"")
    try:
        test, reads = compile_expr(b.get("when", ""), known)
    except ExprError as exc:
        raise DefinitionsError(f"{path}: {at}.when: {exc}") from None
    return AudienceDef(name, b["when"], purpose, str(b.get("description", "")), reads, test)
