"""Offline oracle for the identity graph: connected components of the identifier graph (union-find).

Every event joins all of its identifiers; with no conflicting rule in play the live graph must
end with exactly these components, whatever the order, batching or number of workers (invariant 3).
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.identity.model import Identifier

__all__ = ["UnionFind", "components", "partition_of"]


class UnionFind:
    """Disjoint sets with path halving and union by size."""

    def __init__(self) -> None:
        self._parent: dict[Identifier, Identifier] = {}
        self._size: dict[Identifier, int] = {}

    def add(self, x: Identifier) -> None:
        if x not in self._parent:
            self._parent[x] = x
            self._size[x] = 1

    def find(self, x: Identifier) -> Identifier:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: Identifier, b: Identifier) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]

    def items(self) -> Iterable[Identifier]:
        return self._parent.keys()


def components(events: Iterable[Iterable[Identifier]]) -> set[frozenset[Identifier]]:
    """Connected components over all identifiers; each event links all of its identifiers."""
    uf = UnionFind()
    for idents in events:
        idents = list(idents)
        for x in idents:
            uf.add(x)
        for x in idents[1:]:
            uf.union(idents[0], x)
    groups: dict[Identifier, set[Identifier]] = {}
    for x in uf.items():
        groups.setdefault(uf.find(x), set()).add(x)
    return {frozenset(g) for g in groups.values()}


def partition_of(owner: dict[Identifier, str | None]) -> set[frozenset[Identifier]]:
    """Turn identifier -> profile id (as read back from a graph) into a set of components."""
    groups: dict[str | None, set[Identifier]] = {}
    for ident, pid in owner.items():
        groups.setdefault(pid, set()).add(ident)
    return {frozenset(g) for g in groups.values()}
