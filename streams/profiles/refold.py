"""Folding both sides of a split again from the events that belong to each (issue 17 item 5).

Where the events come from: ``<ns>.profile-events`` itself, read to its end once per split. It
holds every event ingest resolved, keyed by the profile it was resolved to (its origin), and the
merge controls, for the topic's retention (7 days by default, ``retention.ms`` of the topic). No
second copy of the events is kept: a split costs one read of the topic (seconds per million
events) instead of every event being written twice for a per-person log. The trade-off: what the
topic no longer holds (events older than its retention) is not in the refolded profiles; the
result says how many events each side was folded from, and the profile's ``first_seen`` shows
where that history starts.

Which events: those folded into the split profile S or into a profile merged into it, exactly
once each: for S, its events before the ``split`` control (later ones are folded live, or
forwarded to the new profile N by the stage); for each profile L merged into S, its events
before its own ``merge`` control (later ones were forwarded and are S's copies). Each event goes
to the side of its identifiers (the stronger identifier decides when it carries both: the side
resolution would now give it) and loses the other side's identifiers.

Pure: records in, two profile values out (streams/identity/split_person.py does the I/O).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.profiles.profile import DEFAULT_LIMITS, Limits, decode, new_profile
from streams.profiles.stage import ProfileStage, split_off

__all__ = ["events_to_refold", "refold_sides"]

Item = tuple[str, int, int, dict[str, Any]]  # key, partition, position, value


def events_to_refold(items: Iterable[Item], pids: set[str], split_at: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The events folded into the profiles ``pids`` (the split one and those merged into it)
    before the split, in topic order per partition. ``split_at``: (partition, position) of the
    split control of the split profile (events of that key from there on are not taken)."""
    mine = [it for it in items if it[0] in pids]
    stop: dict[tuple[str, int], int] = {}
    earlier: list[dict[str, list[str]]] = []  # splits before this one
    for key, partition, pos, value in mine:
        control = value.get("control")
        if control == "merge" and (key, partition) not in stop:
            stop[(key, partition)] = pos
        elif control == "split" and (split_at is None or (partition, pos) != split_at):
            earlier.append({str(value.get("into")): list(value.get("moved") or ())})
    out = []
    for key, partition, pos, value in mine:
        if "control" in value:
            continue
        end = stop.get((key, partition))
        if split_at is not None and partition == split_at[0] and (end is None or split_at[1] < end):
            end = split_at[1]
        if end is not None and pos >= end:
            continue
        # an event an earlier split already moved away (refolded into, or forwarded to, its new profile)
        if any(split_off(so, value) for so in earlier):
            continue
        out.append(value)
    return out


def _side(ids: list[str], moved: set[str], kept: set[str], rank: Callable[[str], int]) -> bool:
    """True when the event belongs to the moved side."""
    in_b = [i for i in ids if i in moved]
    in_a = [i for i in ids if i in kept]
    if in_b and in_a:
        return min(in_b, key=rank) == min([*in_b, *in_a], key=rank)
    return bool(in_b)


def refold_sides(events: Iterable[dict[str, Any]], moved: set[str], kept: set[str], rank: Callable[[str], int],
                 limits: Limits = DEFAULT_LIMITS, keep_identifier: Callable[[str], bool] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any], Mapping[str, int]]:
    """(kept side's value, moved side's value, events folded per side) from the events before
    the split; an event without any identifier of either side stays with the kept side."""
    stage = ProfileStage(limits, keep_identifier)
    states: list[bytes | None] = [None, None]
    counts = {"kept": 0, "moved": 0, "duplicates": 0}
    for n, ev in enumerate(events):
        ids = [i for i in ev.get("identifiers") or () if not i.startswith("order_id:")]
        b = _side(ids, moved, kept, rank)
        other = kept if b else moved
        ev = {**ev, "identifiers": [i for i in ev.get("identifiers") or () if i not in other]}
        d = stage.decide("refold", states[b], ev, n)
        if d.outcome == "applied":
            states[b] = d.value
            counts["moved" if b else "kept"] += 1
        else:
            counts["duplicates"] += 1
    out = []
    for raw in states:
        state = decode(raw) if raw else new_profile()
        state.pop("po", None)
        out.append(state)
    return out[0], out[1], counts
