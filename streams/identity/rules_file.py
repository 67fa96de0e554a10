"""Identity rules from a TOML file (``TOUCHPOINT_IDENTITY_RULES``), validated with one-line errors.

Every key is optional; a missing key keeps the default of :class:`IdentityRules`, so an empty
file reproduces the built-in rules. Example (every key shown)::

    priority = ["user_id", "member_id", "crm_id", "email", "phone", "wechat_unionid",
                "wechat_openid", "pos_card_id", "device_id", "anonymous_id"]
    unique_types = ["user_id", "member_id"]
    no_merge_types = []            # attach to a profile, never merge two
    per_event_types = ["order_id"] # new with every purchase: never counted by the link breaker
    default_limit = 50

    [limits]                       # per type; unlisted types keep their default
    pos_card_id = 3

    [blocked]
    values = ["null", "anonymous"] # replaces the default list (omit to keep it)
    extra_values = ["n.a."]        # added to the list in force
    patterns = ['[0\\-\\s]*']      # full-match regexes, case-insensitive
    extra_patterns = []

    [blocked.types.phone]          # per type, on the raw value (email: normalised, phone: E.164)
    extra_values = ["+8613800000000"]
    extra_patterns = ['\\+8695\\d{3}']

    [phone]
    require_valid = true           # phonenumbers.is_valid_number
    refused_types = ["toll_free", "premium_rate", "shared_cost", "uan", "voicemail", "pager"]

    [supernode]
    max_merges = 5                 # false = off
    max_links = 2                  # false = off
    links_by_type = { anonymous_id = 10, device_id = 4 }

The Lua script and the in-memory twin both take their numbers from the one
:class:`IdentityRules` built here (the Redis adapter compiles them into the script text).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streams.identity.rules import IdentityRules

__all__ = ["RulesFileError", "load_rules", "parse_rules", "rules_from_settings"]

_TOP = {"priority", "unique_types", "no_merge_types", "per_event_types", "default_limit", "limits", "blocked", "phone", "supernode"}
_BLOCKED = {"values", "extra_values", "patterns", "extra_patterns", "types"}
_TYPE_BLOCKED = {"values", "extra_values", "patterns", "extra_patterns"}


class RulesFileError(ValueError):
    """The rules file cannot be used; the message is one line naming the file and the key."""


def _strs(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise RulesFileError(f"{where}: expected a list of strings")
    return tuple(value)


def _count(where: str, value: Any, allow_off: bool = False) -> int | None:
    if allow_off and value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RulesFileError(f"{where}: expected a whole number >= 0{' or false' if allow_off else ''}")
    return value


def _table(where: str, value: Any, allowed: set[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RulesFileError(f"{where}: expected a table")
    if allowed is not None and (unknown := sorted(set(value) - allowed)):
        raise RulesFileError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return value


def _blocklists(where: str, table: Mapping[str, Any], values: tuple[str, ...], patterns: tuple[str, ...]
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if "values" in table:
        values = _strs(f"{where}.values", table["values"])
    values += _strs(f"{where}.extra_values", table.get("extra_values", []))
    if "patterns" in table:
        patterns = _strs(f"{where}.patterns", table["patterns"])
    patterns += _strs(f"{where}.extra_patterns", table.get("extra_patterns", []))
    return values, patterns


def parse_rules(data: Mapping[str, Any], source: str = "rules") -> IdentityRules:
    """Rules from a decoded TOML document; raises :class:`RulesFileError` (one line)."""
    base = IdentityRules()
    doc = _table(source, data, _TOP)
    kw: dict[str, Any] = {}
    if "priority" in doc:
        kw["priority"] = _strs(f"{source}: priority", doc["priority"])
    for key in ("unique_types", "no_merge_types", "per_event_types"):
        if key in doc:
            kw[key] = frozenset(_strs(f"{source}: {key}", doc[key]))
    if "default_limit" in doc:
        kw["default_limit"] = _count(f"{source}: default_limit", doc["default_limit"])
    if "limits" in doc:
        limits: dict[str, int | None] = dict(base.limits)
        for t, n in _table(f"{source}: limits", doc["limits"]).items():
            limits[t] = _count(f"{source}: limits.{t}", n)
        kw["limits"] = limits
    if "blocked" in doc:
        blocked = _table(f"{source}: blocked", doc["blocked"], _BLOCKED)
        kw["blocked_values"], kw["blocked_patterns"] = _blocklists(f"{source}: blocked", blocked, base.blocked_values,
                                                                   base.blocked_patterns)
        tv, tp = dict(base.type_blocked_values), dict(base.type_blocked_patterns)
        for t, table in _table(f"{source}: blocked.types", blocked.get("types", {})).items():
            where = f"{source}: blocked.types.{t}"
            tv[t], tp[t] = _blocklists(where, _table(where, table, _TYPE_BLOCKED), tv.get(t, ()), tp.get(t, ()))
        kw["type_blocked_values"], kw["type_blocked_patterns"] = tv, tp
    if "phone" in doc:
        phone = _table(f"{source}: phone", doc["phone"], {"require_valid", "refused_types"})
        if "require_valid" in phone:
            if not isinstance(phone["require_valid"], bool):
                raise RulesFileError(f"{source}: phone.require_valid: expected true or false")
            kw["phone_require_valid"] = phone["require_valid"]
        if "refused_types" in phone:
            kw["refused_phone_types"] = _strs(f"{source}: phone.refused_types", phone["refused_types"])
    if "supernode" in doc:
        sn = _table(f"{source}: supernode", doc["supernode"], {"max_merges", "max_links", "links_by_type"})
        if "max_merges" in sn:
            kw["supernode_max_merges"] = _count(f"{source}: supernode.max_merges", sn["max_merges"], allow_off=True)
        if "max_links" in sn:
            kw["supernode_max_links"] = _count(f"{source}: supernode.max_links", sn["max_links"], allow_off=True)
        if "links_by_type" in sn:
            kw["supernode_links_by_type"] = {t: _count(f"{source}: supernode.links_by_type.{t}", n)
                                             for t, n in _table(f"{source}: supernode.links_by_type", sn["links_by_type"]).items()}
    try:
        return IdentityRules(**kw)
    except ValueError as exc:
        raise RulesFileError(f"{source}: {exc}") from None


def load_rules(path: str | Path) -> IdentityRules:
    """Read and validate a rules file; raises :class:`RulesFileError` (one line)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RulesFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_rules(data, str(path))


def rules_from_settings(settings: Any) -> IdentityRules:
    """The rules a worker or command runs with: the file of ``TOUCHPOINT_IDENTITY_RULES``, else the defaults."""
    path = getattr(settings, "identity_rules", "")
    return load_rules(path) if path else IdentityRules()
