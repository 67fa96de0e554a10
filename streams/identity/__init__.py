"""Identity resolution: stitch the typed identifiers of one person into one profile.

Pure rules (:mod:`.rules`), value types (:mod:`.model`), an in-memory twin
(:mod:`.memory_graph`), the Redis adapter with atomic Lua (:mod:`.redis_graph`) and an offline
connected-components oracle for tests (:mod:`.oracle`).

The names below are loaded on first use (PEP 562), so importing a pure module of this package
does not load the Redis adapter (tests/test_architecture.py).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Identifier", "ResolveRequest", "Resolution", "ErasureResult", "IdentityGraph", "IdentityRules",
    "MemoryIdentityGraph", "RedisIdentityGraph", "IdentityGraphError",
]

_HOME = {
    "Identifier": "model", "ResolveRequest": "model", "Resolution": "model", "ErasureResult": "model",
    "IdentityGraph": "model", "IdentityRules": "rules", "MemoryIdentityGraph": "memory_graph",
    "RedisIdentityGraph": "redis_graph", "IdentityGraphError": "redis_graph",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
