"""The activation stage: computed traits folded with the profile, audiences and profile updates
decided when a changed profile value is about to be written. Faust-free (unit-tested with bytes).

Two entry points, used by the profiles agent (streams/profiles/agent.py):

- :meth:`ActivationStage.decide` wraps :meth:`ProfileStage.decide`: an applied event is folded
  into the computed-trait state ``ax`` of the new value, an absorbed profile's ``ax`` is merged
  (exactly once, because the profile stage folds an absorb once), and the control record
  ``{"control": "activate"}`` (sent by the re-evaluation timer for profiles whose traits depend
  on time) passes the current value on unchanged so it is settled again.
- :meth:`ActivationStage.settle` is called once per record for every key whose value changed,
  with the value stored before the record and the value about to be written. It evaluates the
  computed traits and audiences at ``now``, and returns the value to write (``ax.m`` and ``ax.h``
  updated) with the records to produce first: audience changes on ``<ns>.audiences`` and the
  profile update on ``<ns>.profile-updates`` (a redirect when merged away, Kafka tombstones for
  the profile and every id merged into it when erased).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import orjson

from streams.activation import audiences as A
from streams.activation import traits as TR
from streams.activation.definitions import Definitions
from streams.profiles.profile import decode, encode, iso, profile_fields
from streams.profiles.stage import Decision, ProfileStage, Send

__all__ = ["ActivationStage", "Out", "AUDIENCES", "PROFILE_UPDATES", "UPDATE_SCHEMA"]

AUDIENCES = "audiences"
PROFILE_UPDATES = "profile-updates"
UPDATE_SCHEMA = "touchpoint.profile-update.v1"


@dataclass(frozen=True, slots=True)
class Out:
    """A record to produce on one of the activation topics (logical name), keyed by profile id."""

    topic: str
    key: str
    value: bytes | None  # None = a Kafka tombstone (erasure on the compacted profile-updates)
    kind: str  # what it is, for the counters: entered/exited (audiences), profile/redirect/tombstone


KEEP_DECODED = 512  # values decided and not yet settled (a bundle has ~125 keys), at most

# Copying a set-up hasher skips blake2b's keyword parsing and setup (once per settled key).
_DIGEST = hashlib.blake2b(digest_size=6)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ActivationStage:
    """Wraps the profile stage; holds only configuration (definitions and a clock)."""

    def __init__(self, inner: ProfileStage, defs: Definitions, clock: Callable[[], int] = _now_ms,
                 keep_decoded: int = KEEP_DECODED) -> None:
        self.inner = inner
        # The profile stage keeps the dict of each value it decides; settle takes it instead of
        # decoding the bytes again (ProfileStage.take: tied to the bytes by identity).
        inner.keep_decoded = keep_decoded
        self.defs = defs
        self.clock = clock
        # key -> (the value bytes the last decision staged, events / absorbed trait states decided
        # on the way to it since the key was last settled). Tied to those bytes by identity: a
        # record interrupted between decide and settle (cancelled, failed) leaves an entry whose
        # bytes are not what the key is decided or settled against next, so it is dropped.
        self._pending: dict[str, tuple[bytes | None, list[dict[str, Any]]]] = {}

    def decide(self, key: str, current: bytes | None, raw: bytes | dict[str, Any] | None, offset: int) -> Decision:
        msg: Any = raw
        if not isinstance(raw, dict):
            try:
                msg = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                msg = None
        if isinstance(msg, dict) and msg.get("control") == "activate":
            if current is None or current.startswith(b'{"tomb"'):
                return Decision("reevaluated")
            return Decision("reevaluated", current)
        d = self.inner.decide(key, current, msg if isinstance(msg, dict) else raw, offset)
        if not self.defs.traits:
            return d
        held = self._pending.get(key)
        if held is not None and held[0] is not current:
            del self._pending[key]  # left by an interrupted record: its events are decided again
            held = None
        outcome = d.outcome
        if outcome == "applied" or (outcome == "absorbed" and (msg.get("state") or {}).get("ax")):
            # Folded into the computed-trait state when the key is settled (one decode and encode
            # per key and record instead of one per event); folds commute, so the order is free.
            item = msg if outcome == "applied" else {"ax": msg["state"]["ax"]}
            self._pending[key] = (d.value, [*(held[1] if held else ()), item])
        elif held is not None and d.value is not None:
            self._pending[key] = (d.value, held[1])  # e.g. absorbed without traits: still pending
        if outcome == "merged" and held is not None and d.sends:
            d = replace(d, sends=tuple(self._with_pending(key, send, held[1]) for send in d.sends))
            self._pending.pop(key, None)
        elif outcome == "erased":
            self._pending.pop(key, None)
        return d

    def _with_pending(self, key: str, send: Send, items: list[dict[str, Any]]) -> Send:
        """The absorb of a profile merged away in the record that also changed it: its state must
        carry the computed-trait folds still pending for it."""
        msg = orjson.loads(send.value)
        state = msg.get("state")
        if msg.get("control") != "absorb" or not isinstance(state, dict):
            return send
        self._apply(items, state.setdefault("ax", {}))
        return replace(send, value=orjson.dumps(msg))

    def _apply(self, items: list[dict[str, Any]], ax: dict[str, Any]) -> None:
        for item in items:
            if "ax" in item and "ts_ms" not in item:
                TR.merge(ax, item["ax"], self.defs)
            else:
                TR.fold(ax, item, self.defs)

    # -- settling a written value ----------------------------------------------------------------

    def settle(self, key: str, before: bytes | None, after: bytes, at_ms: int | None = None) -> tuple[bytes, list[Out]]:
        """The value to write for ``key`` and the records to produce (and land) before it.

        Traits are evaluated at the clock's now; the records are stamped ``at_ms``, the Kafka
        timestamp of the input record that caused them (now when not given). A replay after a
        crash between the sends and the write settles the same record again and must produce
        the same bytes under the same idempotency keys, not a copy with a later time.
        """
        now = self.clock()
        stamp = now if at_ms is None else at_ms
        state = self.inner.take(key, after)  # the dict the profile stage just encoded, not a decode
        held = self._pending.pop(key, None)
        tomb = state.get("tomb")
        if tomb is None:
            if held is not None and held[0] is after:
                self._apply(held[1], state.setdefault("ax", {}))
            return self._live(key, state, now, stamp)
        prior = decode(before) if before else None
        if prior is None or "tomb" in prior:
            # Nothing was published for a live profile under this key since it stopped being live.
            outs = [Out(PROFILE_UPDATES, key, None, "tombstone")] if tomb == "erased" else []
            return after, outs
        prior_ax = prior.get("ax") or {}
        published = prior_ax.get("m") or {}
        stamp = max(stamp, prior_ax.get("ts", 0))
        outs = [Out(AUDIENCES, key, orjson.dumps(A.change_record(key, name, entered, k, stamp, self._purpose(name), tomb)), _change(entered))
                for name, entered, k in A.diff(dict(published), set())]
        if tomb == "merged":
            outs.append(Out(PROFILE_UPDATES, key, orjson.dumps(
                {"schema": UPDATE_SCHEMA, "type": "redirect", "profile_id": key, "redirect_to": state["into"], "ts_ms": stamp}), "redirect"))
        else:  # erased: this id and every id folded into it (their redirects) leave the compacted topic
            outs.extend(Out(PROFILE_UPDATES, pid, None, "tombstone") for pid in [key, *prior.get("ab", [])])
        return after, outs

    def _purpose(self, audience: str) -> str | None:
        try:
            return self.defs.audience(audience).purpose
        except KeyError:
            return None

    def _live(self, key: str, state: dict[str, Any], now: int, stamp: int) -> tuple[bytes, list[Out]]:
        ax = state.setdefault("ax", {})
        # Never earlier than what this id published last: receivers order profile updates by
        # ts_ms, and input records of one partition come from producers whose clocks may differ.
        stamp = max(stamp, ax.get("ts", 0))
        computed = TR.evaluate(ax, self.defs, now)
        inside = A.members(self.defs, state, computed)
        published = ax.setdefault("m", {})
        outs = [Out(AUDIENCES, key, orjson.dumps(A.change_record(key, name, entered, k, stamp, self._purpose(name), "evaluated")), _change(entered))
                for name, entered, k in A.diff(published, inside)]
        # The public profile is a function of the records folded (the event count and the ids
        # absorbed change with every one) and of the computed traits and audiences (which change
        # with time too): a digest of those says whether an update is due without rendering it.
        h = _DIGEST.copy()
        h.update(orjson.dumps([state["n"], state["ab"], computed, sorted(inside)]))
        digest = h.hexdigest()
        if ax.get("h") != digest:
            ax["h"] = digest
            body = public_profile(key, state, computed, inside)
            outs.append(Out(PROFILE_UPDATES, key, orjson.dumps({"schema": UPDATE_SCHEMA, "type": "profile", "profile_id": key,
                                                                "ts_ms": stamp, "profile": body}), "profile"))
        if outs:
            ax["ts"] = stamp
        due = TR.due(ax, self.defs, now)
        if due is None:
            ax.pop("due", None)
        else:
            ax["due"] = due
        return encode(state), outs


def _change(entered: bool) -> str:
    return "entered" if entered else "exited"


_iso = lru_cache(maxsize=1 << 16)(iso)  # identifiers' first/last seen repeat on every update of a profile


def public_profile(key: str, state: dict[str, Any], computed: dict[str, Any], inside: set[str]) -> dict[str, Any]:
    """The profile as downstream apps see it (profile-updates): exactly what ``render`` gives
    without ``profile_id`` and the timeline (tests/unit/activation/test_stage_records.py checks
    that), plus computed traits and audiences. Written out with cached timestamps: rendering was
    most of the cost of a profile update."""
    body = profile_fields(state, _iso)  # a new dict: the two keys go last, as in a {**...} copy
    body["computed_traits"] = computed
    body["audiences"] = sorted(inside)
    return body
