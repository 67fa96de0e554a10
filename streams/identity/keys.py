"""The Redis key layout of the identity graph: the one place that names its keys, for Python and Lua.

Every key lives under ``<namespace>:`` (email/phone values are keyed hashes, invariant 7):

========================= ======== ====================================================================
key                       name     holds
========================= ======== ====================================================================
``id:<type>:<value>``     ID       live profile id (always the survivor: merges repoint every identifier)
``p:<pid>``               LINKS    hash ``<type>:<value>`` -> link provenance ``via SEP message_id SEP rule SEP ts``
``pm:<pid>``              META     hash ``n:<type>`` -> count, ``u:<type>`` -> value of a unique type,
                                   ``s:<split id>`` -> side of a split (streams/identity/split.py)
``pe:<pid>``              BRIDGES  list of merge (and split rejoin) bridges ``x SEP y SEP message_id SEP rule SEP ts``
``pl:<pid>``              MERGED   set of every profile id forwarded to ``pid``
``fwd:<pid>``             FWD      survivor of a merged-away profile (one hop: repointed on later merges)
``seq``                   SEQ      profile sequence; profile id = "p" + base36(INCR seq)
``dedup:<message_id>``    DEDUP    claim of the first record carrying it, then ``claim SEP outcome SEP profile``
                                   (replay tier: TTL ``TOUCHPOINT_DEDUP_TTL_S``)
``dres:<message_id>``     REPLY    stored reply of a non-trivial resolution, replayed on redelivery (same TTL)
``dw:<slice>:<shard>``    WINDOW   hash: 10-byte digest of a message id -> ``partition/offset`` of its first
                                   claim (window tier, ``TOUCHPOINT_DEDUP_WINDOW_S``; streams/identity/dedup_window.py)
``supp:<sha1(t:v)>``      SUPP     erasure suppression (no identifier value kept): the erasure time in ms
                                   ("1" before it was kept), ``r<ms>`` once readmitted (streams/identity/rights.py)
``dk:<digest>``           DATA_KEY data key sealing one identifier in identity.changes (streams/identity/data_keys.py)
``quar:<type>:<value>``   QUAR     quarantined supernode (-> message id that tripped it)
``deg:<type>:<value>``    DEG      merges bridged by this identifier (merge breaker)
``lnk:<type>:<value>``    LNK      hash ``<type>`` -> identifiers of that type it gathered (link breaker)
========================= ======== ====================================================================

The Lua scripts name no key themselves: each has a ``__KEYS__`` line that :func:`lua_source`
replaces with ``local K_ID, K_P, ... = ns .. 'id:', ns .. 'p:', ...`` built from the table below
(``ns`` = the script's ``"<namespace>:"`` argument); tests/unit/identity/test_keys.py checks that
no script holds a key prefix of its own.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["ID", "LINKS", "META", "BRIDGES", "MERGED", "FWD", "SEQ", "DEDUP", "REPLY", "WINDOW", "SUPP", "QUAR", "DEG", "LNK", "DATA_KEY",
           "LUA_NAMES", "lua_prelude", "lua_source", "Keys"]

ID, LINKS, META, BRIDGES, MERGED, FWD = "id:", "p:", "pm:", "pe:", "pl:", "fwd:"
SEQ, DEDUP, REPLY, SUPP, QUAR, DEG, LNK = "seq", "dedup:", "dres:", "supp:", "quar:", "deg:", "lnk:"
DATA_KEY, WINDOW = "dk:", "dw:"

# Lua local -> prefix (the names resolve.lua, erase.lua and split.lua use).
LUA_NAMES = MappingProxyType({
    "K_ID": ID, "K_P": LINKS, "K_PM": META, "K_PE": BRIDGES, "K_PL": MERGED, "K_FWD": FWD, "K_SEQ": SEQ,
    "K_DEDUP": DEDUP, "K_DRES": REPLY, "K_DW": WINDOW, "K_SUPP": SUPP, "K_QUAR": QUAR, "K_DEG": DEG, "K_LNK": LNK,
})
PLACEHOLDER = "__KEYS__"


def lua_prelude(ns_var: str = "ns") -> str:
    """One Lua line defining every key prefix under the namespace held in ``ns_var``.

    >>> lua_prelude()[:44]
    'local K_ID, K_P, K_PM, K_PE, K_PL, K_FWD, K_'
    """
    names = list(LUA_NAMES)
    return f"local {', '.join(names)} = " + ", ".join(f"{ns_var} .. '{LUA_NAMES[n]}'" for n in names)


def lua_source(script: str) -> str:
    """A script's text with its ``__KEYS__`` line filled in (exactly one is required)."""
    if script.count(PLACEHOLDER) != 1:
        raise ValueError(f"a script needs exactly one {PLACEHOLDER} line")
    return script.replace(PLACEHOLDER, lua_prelude())


class Keys:
    """The full key names of one namespace (what Python reads and writes directly)."""

    __slots__ = ("prefix",)

    def __init__(self, namespace: str) -> None:
        self.prefix = namespace + ":"

    def id(self, f: str) -> str:
        return self.prefix + ID + f

    def links(self, pid: str) -> str:
        return self.prefix + LINKS + pid

    def meta(self, pid: str) -> str:
        return self.prefix + META + pid

    def bridges(self, pid: str) -> str:
        return self.prefix + BRIDGES + pid

    def merged(self, pid: str) -> str:
        return self.prefix + MERGED + pid

    def fwd(self, pid: str) -> str:
        return self.prefix + FWD + pid

    def quar(self, f: str) -> str:
        return self.prefix + QUAR + f

    def dedup(self, message_id: str) -> str:
        return self.prefix + DEDUP + message_id

    def window(self, slice_no: int, shard: int) -> str:
        return f"{self.prefix}{WINDOW}{slice_no}:{shard}"
