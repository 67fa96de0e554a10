"""The profiles stage: what one ``profile-events`` record does to the table value of its key.

Faust-free, so every decision is unit-tested with plain bytes. The agent (``agent.py``) reads
the current value, calls :meth:`ProfileStage.decide`, performs the sends (awaiting the ones
marked ``must_land``) and only then writes the new value.

Records on ``profile-events`` (key = the profile id the record is about; ingest sends them in
bundles, one record per batch and partition, which the agent takes apart: ``bundle.py``):

- an event: ``Touchpoint.to_dict()``; ``profile_id`` is the profile identity resolved it to
  (its *origin*). A record whose key differs from its origin was forwarded here.
- ``{"control": "merge", "from": B, "into": A}`` keyed B (from ingest): fold B into A.
- ``{"control": "absorb", "from": B, "into": A, "state": {...}}`` keyed A (from this stage):
  B's whole state, folded into A exactly once.
- ``{"control": "erase", "profile_id": P}`` keyed P: delete P, keep an erased tombstone.
- ``{"control": "split", "profile_id": S, "into": N, "moved": [TYPE:VALUE, ...]}`` keyed S (from
  ``touchpoint identity split``, streams/profiles/refold.py): S starts again from an empty value
  (keeping its dedup memory ``wm``/``rc`` and ``ab``); events still in flight for S that carry
  only moved identifiers are forwarded to N from then on (``so``).
- ``{"control": "refold", "profile_id": P, "split": N, "state": {...}}`` keyed P: the value
  refolded from the events before the split that belong to P's side, folded in once (``rf``).

Merge protocol. At B, ``merge`` sends ``absorb(B's state)`` to A, waits until the broker has it,
then replaces B by ``{"tomb": "merged", "into": A}``. Later records for B (events still in flight
from other ingest workers, replays, absorbs of profiles merged into B) are re-sent keyed A. At A,
``absorb`` is folded unless B is already in A's ``ab`` set (so a replayed absorb is a no-op);
A may itself be a tombstone by then, and forwards it on. Everything for B passes through B's
partition in order, so the absorb reaches A before any event B forwards afterwards.

Dedup (invariant 2), exact under the ordering Kafka gives us:

1. ``po``: each value remembers the position of the last ``profile-events`` record written into
   it (``offset * POSITIONS + index`` in its bundle, streams/profiles/bundle.py). Records for one
   key live in one partition, in order, so a record at or below ``po`` is this agent's own
   replay after a crash or rebalance. Side effects are sent before the write
   and awaited when the write depends on them, so skipping a replayed record loses no send.
2. ``wm``: per (origin profile, input partition) the highest input offset applied (from the
   event's ``source`` "topic/partition/offset"). Ingest emits one input partition in offset
   order, and every event of one origin goes through the origin's key in order, so an event at
   or below the watermark is a re-emission by ingest (redelivered input) or a re-forward.
   Watermarks travel with absorbed state, so an event applied at B before the merge and
   re-emitted later for B is still recognised at A.
3. ``rc``: hashes of the last ``Limits.recent_ids`` applied message ids (merged with absorbed
   state), a last line of defence. A redelivered event is re-emitted with the origin it was
   first emitted with (identity replays the first reply, also for trivial resolutions), so an
   event first emitted for B and re-emitted after B merged into A goes to B, is forwarded to A
   after B's absorb, and (2) recognises it there by B's watermark. (Re-resolving it against the
   current graph instead sent it to A as origin A before the absorb: counted twice; found by
   the kill -9 test.)

Limits: an event without a parsable ``source`` is deduplicated by (3) only; a
re-emitted event whose origin was erased is dropped as erased; changing the partition count
of ``profile-events`` invalidates ``po`` (co-partitioned tables cannot be repartitioned anyway).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from streams.events.model import dedup_id
from streams.profiles.bounds import bounded_encode
from streams.profiles.profile import DEFAULT_LIMITS, Limits, decode, encode, fold, merge, new_profile, tombstone

__all__ = ["ProfileStage", "Decision", "Send", "OUTCOMES", "MAX_HOPS"]

MAX_HOPS = 16  # forwarding chains are short (merge chains); a longer one means a loop: drop it
KEEP_IDENTIFIER_VERDICTS = 1 << 14  # identifiers whose keep_identifier verdict is remembered

OUTCOMES = (
    "applied", "duplicate", "replayed", "forwarded", "merged", "merge_duplicate", "absorbed",
    "absorb_duplicate", "erased", "erase_duplicate", "erased_dropped", "invalid",
    "reevaluated",  # streams/activation/stage.py: a time-dependent profile settled again (window slide)
    "split", "refolded", "refold_duplicate",  # touchpoint identity split (streams/profiles/refold.py)
)


@dataclass(frozen=True, slots=True)
class Send:
    """One record to publish on ``profile-events``."""

    key: str
    value: bytes
    must_land: bool = False  # the table write depends on it: await the broker's ack first


@dataclass(frozen=True, slots=True)
class Decision:
    """The stage's answer for one record: outcome, sends, then the new value (None = unchanged)."""

    outcome: str
    value: bytes | None = None
    sends: tuple[Send, ...] = ()
    detail: str = ""
    identifiers: int | None = None  # identifiers the live profile holds after this record (component size)


# Outcomes without a value, sends or detail: shared instances (Decision is frozen), not one per record.
_REPLAYED = Decision("replayed")
_DUPLICATE = Decision("duplicate")
_ABSORB_DUPLICATE = Decision("absorb_duplicate")
_ERASE_DUPLICATE = Decision("erase_duplicate")
_ERASED_DROPPED = Decision("erased_dropped")


# Copying a keyed-up hasher skips blake2b's keyword parsing and setup (once per event).
_DIGEST = hashlib.blake2b(digest_size=5)


def message_digest(message_id: str) -> str:
    """40-bit hash of a message id: small in the value, collisions ~1e-11 per event at 16 kept."""
    h = _DIGEST.copy()
    h.update(message_id.encode())
    return h.hexdigest()


def parse_source(source: Any) -> tuple[str, int] | None:
    """``("topic/partition", offset)`` from ``topic/partition/offset``, or None."""
    if not isinstance(source, str):
        return None
    head, _, offset = source.rpartition("/")
    topic, _, partition = head.rpartition("/")
    if not topic or not partition.isdigit() or not offset.isdigit():
        return None
    return partition, int(offset)


def split_off(so: dict[str, list[str]], event: dict[str, Any]) -> str | None:
    """The profile a split moved every identifier of ``event`` to (order ids aside), or None."""
    ids = [i for i in event.get("identifiers") or () if not i.startswith("order_id:")]
    if not ids:
        return None
    for into, moved in so.items():
        if all(i in moved for i in ids):
            return into
    return None


class ProfileStage:
    """Decides what each record does; holds only configuration."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, keep_identifier: Callable[[str], bool] | None = None,
                 keep_decoded: int = 0) -> None:
        self.limits = limits
        # keep_identifier must be a pure function of the identifier (identity's rules are fixed
        # for the worker's life): its verdicts are remembered, the same identifiers come with
        # every event of a person (~1 us per identifier checked, 38 ns remembered).
        self.keep_identifier = lru_cache(maxsize=KEEP_IDENTIFIER_VERDICTS)(keep_identifier) if keep_identifier else None
        # Entries not kept or trimmed to keep values within the limits, per part (the agent
        # moves them to touchpoint_profile_trimmed_total after each record).
        self.trimmed: Counter[str] = Counter()
        # key -> (value bytes, the dict they are the encoding of): see take() and keep(). Off by
        # default: the activation stage turns it on to settle a value without decoding it again.
        self._decoded: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self.keep_decoded = keep_decoded

    # -- decoded values ----------------------------------------------------------------------------

    def take(self, key: str, raw: bytes) -> dict[str, Any]:
        """``decode(raw)``, without decoding when ``raw`` is the very bytes object last kept for
        ``key`` (:meth:`keep`): the dict encoded to it is handed over instead. The caller owns
        the result (it is no longer kept) and may mutate it.

        Tied to the bytes by identity, like the value the agent stages and writes: a value read
        back from the changelog, or any other bytes, is decoded. A profile value is JSON through
        and through (str keys, lists, no NaN: encode refuses or would change nothing else), so
        the kept dict equals what decoding its bytes gives (tests/unit/activation/test_decoded.py
        runs a population with and without keeping and compares every value and record).

        Meant for a value used again at once (decide, then settle, of one record), so nothing
        else keeps: keeping dicts across records is slower than decoding their bytes again, even
        for the keys written since the last changelog flush only (measured: docs/performance.md,
        sessions 7 and 8; most likely because a kept dict is freed later, and the next decode no
        longer reuses memory still in the cache). Without activation nothing is kept at all: reuse inside one record saved less
        than keeping cost.

        Exact whatever happened to the table meanwhile (a restore from the changelog, a
        rebalance, another worker's value, an erasure or merge tombstone): any bytes but the
        very object kept are decoded; and a value taken is no longer kept, so a decision that
        mutated it and was not written (a duplicate, an error) leaves nothing stale behind
        (tests/unit/profiles/test_decoded.py)."""
        held = self._decoded.pop(key, None)
        if held is not None and held[0] is raw:
            return held[1]
        return decode(raw)

    def keep(self, key: str, raw: bytes, state: dict[str, Any]) -> bytes:
        """Remember that ``raw`` is ``encode(state)`` for ``key`` (the last ``keep_decoded`` keys);
        returns ``raw``. ``state`` must not change afterwards unless taken back by :meth:`take`."""
        kept = self._decoded
        kept.pop(key, None)
        if self.keep_decoded > 0:
            kept[key] = (raw, state)
            if len(kept) > self.keep_decoded:
                del kept[next(iter(kept))]
        return raw

    def forget_decoded(self) -> None:
        """Keep none of the values kept so far (they are decoded from their bytes when next used)."""
        self._decoded.clear()

    def decide(self, key: str, current: bytes | None, raw: bytes | dict[str, Any] | None, offset: int) -> Decision:
        """Decide one record of ``profile-events`` whose key is ``key``: ``raw`` is its value (or
        the decoded item of a bundle), ``offset`` its replay position (``bundle.position``)."""
        state = self.take(key, current) if current else None
        if state is not None and offset <= state.get("po", -1):
            return _REPLAYED
        if isinstance(raw, dict):
            msg: Any = raw
        else:
            try:
                msg = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                msg = None
        if not isinstance(msg, dict):
            return Decision("invalid", detail="not a JSON object")
        control = msg.get("control")
        if control is None:
            return self._event(key, state, msg, offset)
        if control == "merge":
            return self._merge(key, state, msg, offset)
        if control == "absorb":
            return self._absorb(key, state, msg, offset)
        if control == "erase":
            return self._erase(key, state, msg, offset)
        if control == "split":
            return self._split(state, msg, offset)
        if control == "refold":
            return self._refold(state, msg, offset)
        return Decision("invalid", detail=f"unknown control {str(control)[:40]!r}")

    # -- records -------------------------------------------------------------------------------

    def _event(self, key: str, state: dict[str, Any] | None, msg: dict[str, Any], offset: int) -> Decision:
        if "ts_ms" not in msg or "type" not in msg:
            return Decision("invalid", detail="event without ts_ms or type")
        if state is None:
            state = new_profile()
        else:
            tomb = state.get("tomb")
            if tomb == "merged":
                return self._forward(state["into"], msg)
            if tomb == "erased":
                return _ERASED_DROPPED  # invariant 5: late events of an erased person stay dropped
            if "so" in state:
                into = split_off(state["so"], msg)
                if into is not None:
                    return self._forward(into, msg)
        src = parse_source(msg.get("source"))
        if src is not None:
            partition, input_offset = src
            mark = f"{msg.get('profile_id') or key}/{partition}"  # origin/partition
            marks = state["wm"]
            if input_offset <= marks.get(mark, -1):
                return _DUPLICATE
            marks[mark] = input_offset
        digest = message_digest(dedup_id(str(msg.get("message_id", "")), msg.get("scope")))
        recent = state.setdefault("rc", [])
        if digest in recent:
            return _DUPLICATE
        recent.append(digest)
        if len(recent) > self.limits.recent_ids:
            del recent[0]  # (an unguarded negative slice here used to trim the list to ~half)
        fold(state, msg, self.limits, self.keep_identifier, self.trimmed)
        state["po"] = offset
        return Decision("applied", self.keep(key, bounded_encode(state, self.limits, self.trimmed), state), identifiers=len(state["ids"]))

    def _merge(self, key: str, state: dict[str, Any] | None, msg: dict[str, Any], offset: int) -> Decision:
        into = msg.get("into")
        if not isinstance(into, str) or not into or into == key:
            return Decision("invalid", detail="merge without a survivor other than the key")
        if state is not None and state.get("tomb") == "merged":
            # Identity merges a profile once; the same instruction again is a re-emission.
            return Decision("merge_duplicate", detail="" if state["into"] == into else f"already merged into {state['into']}")
        if state is not None and state.get("tomb") == "erased":
            return _ERASED_DROPPED
        tomb = encode(tombstone("merged", offset, msg.get("ts_ms"), into))
        if state is None:
            # Nothing of B arrived yet: B's events will be forwarded as they come.
            return Decision("merged", tomb)
        state.pop("po", None)
        bounded_encode(state, self.limits, self.trimmed)  # a value written before the bound existed
        absorb = {"control": "absorb", "from": key, "into": into, "message_id": msg.get("message_id"), "state": state}
        # must_land: once the tombstone is written a replay skips this record, so the absorb
        # has to be in Kafka before (otherwise B's state could be lost in a crash).
        return Decision("merged", tomb, (Send(into, orjson.dumps(absorb), must_land=True),))

    def _absorb(self, key: str, state: dict[str, Any] | None, msg: dict[str, Any], offset: int) -> Decision:
        loser, other = msg.get("from"), msg.get("state")
        if not isinstance(loser, str) or not isinstance(other, dict):
            return Decision("invalid", detail="absorb without from/state")
        if state is not None and state.get("tomb") == "merged":
            return self._forward(state["into"], msg)
        if state is not None and state.get("tomb") == "erased":
            return _ERASED_DROPPED
        state = state if state is not None else new_profile()
        if loser in state["ab"]:
            return _ABSORB_DUPLICATE  # folded once already (replayed or re-forwarded)
        other = {**new_profile(), **other}
        other["ab"] = sorted(set(other["ab"]) | {loser})
        merge(state, other, self.limits)
        state["po"] = offset
        return Decision("absorbed", self.keep(key, bounded_encode(state, self.limits, self.trimmed), state), identifiers=len(state["ids"]))

    def _erase(self, key: str, state: dict[str, Any] | None, msg: dict[str, Any], offset: int) -> Decision:
        if state is not None and state.get("tomb") == "erased":
            return _ERASE_DUPLICATE
        tomb = encode(tombstone("erased", offset, msg.get("ts_ms")))
        sends: tuple[Send, ...] = ()
        if state is not None and state.get("tomb") == "merged":
            # The survivor holds this person's data too: erase it as well (idempotent there).
            fwd = {"control": "erase", "profile_id": state["into"], "ts_ms": msg.get("ts_ms"), "fwd": int(msg.get("fwd", 0)) + 1}
            sends = (Send(state["into"], orjson.dumps(fwd), must_land=True),)
        return Decision("erased", tomb, sends)

    def _split(self, state: dict[str, Any] | None, msg: dict[str, Any], offset: int) -> Decision:
        into, moved = msg.get("into"), msg.get("moved")
        if not isinstance(into, str) or not isinstance(moved, list):
            return Decision("invalid", detail="split without into/moved")
        if state is not None and state.get("tomb") == "merged":
            return self._forward(state["into"], msg)
        if state is not None and state.get("tomb") == "erased":
            return _ERASED_DROPPED
        old = state if state is not None else new_profile()
        if into in old.get("so", {}):
            return Decision("split", None)  # the same split again: nothing more to reset
        # Everything folded so far comes back with the refold; the dedup memory stays so that
        # re-emitted events are still recognised, and absorbed ids stay absorbed.
        fresh = new_profile()
        fresh.update(wm=old["wm"], rc=old.get("rc", []), ab=old["ab"], so={**old.get("so", {}), into: sorted(moved)})
        if "rf" in old:
            fresh["rf"] = old["rf"]
        fresh["po"] = offset
        return Decision("split", bounded_encode(fresh, self.limits, self.trimmed), identifiers=0)

    def _refold(self, state: dict[str, Any] | None, msg: dict[str, Any], offset: int) -> Decision:
        split, other = msg.get("split"), msg.get("state")
        if not isinstance(split, str) or not isinstance(other, dict):
            return Decision("invalid", detail="refold without split/state")
        if state is not None and state.get("tomb") == "merged":
            return self._forward(state["into"], msg)
        if state is not None and state.get("tomb") == "erased":
            return _ERASED_DROPPED
        state = state if state is not None else new_profile()
        if split in state.get("rf", ()):
            return Decision("refold_duplicate")
        merge(state, {**new_profile(), **other}, self.limits)
        state["rf"] = sorted({*state.get("rf", ()), split})
        state["po"] = offset
        return Decision("refolded", bounded_encode(state, self.limits, self.trimmed), identifiers=len(state["ids"]))

    def _forward(self, into: str, msg: dict[str, Any]) -> Decision:
        hops = int(msg.get("fwd", 0)) + 1
        if hops > MAX_HOPS:
            return Decision("invalid", detail=f"forwarded more than {MAX_HOPS} times (loop?)")
        msg["fwd"] = hops
        if msg.get("control") == "absorb":
            msg["into"] = into
        # Not awaited and no table write: a replay re-forwards, and the survivor's watermark /
        # absorbed set makes the copy a no-op.
        return Decision("forwarded", None, (Send(into, orjson.dumps(msg)),))
