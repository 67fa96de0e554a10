"""Identity resolution: stitch the typed identifiers of one person into one profile.

Pure rules (:mod:`.rules`), value types (:mod:`.model`), an in-memory twin
(:mod:`.memory_graph`), the Redis adapter with atomic Lua (:mod:`.redis_graph`) and an offline
connected-components oracle for tests (:mod:`.oracle`).
"""

from streams.identity.memory_graph import MemoryIdentityGraph
from streams.identity.model import ErasureResult, Identifier, IdentityGraph, Resolution, ResolveRequest
from streams.identity.redis_graph import IdentityGraphError, RedisIdentityGraph
from streams.identity.rules import IdentityRules

__all__ = [
    "Identifier", "ResolveRequest", "Resolution", "ErasureResult", "IdentityGraph", "IdentityRules",
    "MemoryIdentityGraph", "RedisIdentityGraph", "IdentityGraphError",
]
