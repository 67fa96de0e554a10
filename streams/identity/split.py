"""Splitting a profile in two: which identifiers move, and how the link provenance is cut.

A profile's recorded links form a tree over its identifiers: each identifier is linked ``via``
the anchor of the event that brought it (``p:<pid>``), and each merge adds one bridge between the
two profiles (``pe:<pid>``). Removing one edge of a tree leaves exactly two components, so a
split is one of:

- **cut** ``(a, b)``: remove the recorded link or merge bridge between ``a`` and ``b`` (a step of
  ``touchpoint identity why``; undoing a merge = cutting its bridge, the pair named by its
  ``merged`` record); the side of ``b`` moves to a new profile;
- **detach** ``x``: ``x`` alone moves to a new profile; the pieces it held together stay one
  profile, rejoined by bridges recorded with rule ``split`` (the operator's decision is the
  provenance: no event is invented).

Links crossing the cut lose their ``via`` (they start their side's tree). Both graphs (the
memory twin and ``lua/split.lua``) apply exactly this plan; :func:`plan_split` is the reference.

Afterwards the two sides carry opposite *split tags* (``pm`` field ``s:<new pid>`` = ``a`` on
the kept side, ``b`` on the moved one). Tags travel with merges like unique values, and resolution
refuses to join two profiles whose tags disagree (``conflict`` record, rule ``split``): the link
stays refused, also through later merges and replays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streams.identity.model import LINK_SEP

__all__ = ["SplitPlan", "SplitError", "plan_split", "SPLIT_RULE", "KEPT", "MOVED"]

SPLIT_RULE = "split"
KEPT, MOVED = "a", "b"


class SplitError(ValueError):
    """The split asked for cannot be done (unknown identifier, no such link, nothing would move)."""


@dataclass(frozen=True)
class SplitPlan:
    moved: tuple[str, ...]              # identifiers moving to the new profile, sorted
    kept_links: dict[str, str]          # rewritten links that stay (only those that change)
    moved_links: dict[str, str]         # every moved identifier's link, rewritten where cut
    kept_edges: tuple[str, ...]         # the bridges that stay, in order, then the rejoins
    moved_edges: tuple[str, ...]        # bridges wholly inside the moved side, in order


def _via(enc: str) -> str:
    return enc.split(LINK_SEP, 1)[0]


def _uncut(enc: str) -> str:
    """The same link without its ``via`` (it starts its side's tree)."""
    return LINK_SEP + enc.split(LINK_SEP, 1)[1]


def plan_split(links: Mapping[str, str], edges: Sequence[str], *, cut: tuple[str, str] | None = None,
               detach: str | None = None, split_id: str = "", ts_ms: int = 0) -> SplitPlan:
    """The plan for one split of the profile whose links and bridges are given (one of ``cut``
    or ``detach``). Raises :class:`SplitError` when nothing can be split as asked."""
    ends = [tuple(e.split(LINK_SEP, 2)[:2]) for e in edges]
    adj: dict[str, list[tuple[str, str]]] = {}  # node -> [(neighbour, edge id)]
    for f, enc in links.items():
        v = _via(enc)
        if v and v in links:
            adj.setdefault(f, []).append((v, "l:" + f))
            adj.setdefault(v, []).append((f, "l:" + f))
    for i, (x, y) in enumerate(ends):
        adj.setdefault(x, []).append((y, f"e:{i}"))
        adj.setdefault(y, []).append((x, f"e:{i}"))
    rejoins: list[str] = []
    if cut is not None:
        a, b = cut
        if a not in links or b not in links or a == b:
            raise SplitError(f"{a} and {b} are not two identifiers of one profile")
        gone = {eid for n, eid in adj.get(a, ()) if n == b}
        if not gone:
            raise SplitError(f"no recorded link between {a} and {b} (see touchpoint identity why)")
        moved = {b}
        todo = [b]
        while todo:
            cur = todo.pop()
            for n, eid in adj.get(cur, ()):
                if eid not in gone and n not in moved:
                    moved.add(n)
                    todo.append(n)
        if a in moved:
            raise SplitError(f"{a} and {b} are also joined by other recorded links")
    else:
        if detach is None or detach not in links:
            raise SplitError(f"{detach} is not in a profile")
        moved = {detach}
        own = _via(links[detach])
        neighbours = sorted({n for n, _ in adj.get(detach, ()) if n != detach})
        if neighbours:
            r = own if own in neighbours else neighbours[0]
            rejoins = [LINK_SEP.join((r, z, split_id, SPLIT_RULE, str(ts_ms))) for z in neighbours if z != r]
    if len(moved) >= len(links):
        raise SplitError("nothing would stay: the profile holds only what would move")
    kept_links: dict[str, str] = {}
    moved_links: dict[str, str] = {}
    for f, enc in links.items():
        v = _via(enc)
        crosses = bool(v) and ((f in moved) != (v in moved))
        if f in moved:
            moved_links[f] = _uncut(enc) if crosses else enc
        elif crosses:
            kept_links[f] = _uncut(enc)
    kept_edges: list[str] = []
    moved_edges: list[str] = []
    for e, (x, y) in zip(edges, ends, strict=True):
        if x in moved and y in moved:
            moved_edges.append(e)
        elif x not in moved and y not in moved:
            kept_edges.append(e)
    return SplitPlan(tuple(sorted(moved)), kept_links, moved_links, tuple(kept_edges + rejoins), tuple(moved_edges))
