"""The worker's GC policy around bucket closes: frozen after each close, unfrozen every N."""

from __future__ import annotations

import gc

from streams.demand.gcpolicy import CloseGc


def test_after_close_freezes_and_every_nth_close_unfreezes() -> None:
    gc.unfreeze()
    try:
        policy = CloseGc(unfreeze_every=3)
        policy.after_close()
        frozen = gc.get_freeze_count()
        assert frozen > 0  # everything alive is in the permanent generation
        policy.after_close()
        assert gc.get_freeze_count() >= frozen
        policy.after_close()  # the 3rd: handed back for a cyclic collection
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_frozen_objects_that_die_are_still_freed_by_reference_counting() -> None:
    import weakref

    class Snapshot(dict):  # a weak-referenceable stand-in for a table value
        pass

    gc.unfreeze()
    try:
        snap = Snapshot(slots=[0.5] * 100)
        ref = weakref.ref(snap)
        CloseGc().after_close()
        del snap
        assert ref() is None  # no GC pass needed: a replaced snapshot is freed at once
    finally:
        gc.unfreeze()


def test_after_slice_freezes_without_counting_a_close() -> None:
    calls: list[str] = []
    policy = CloseGc(2, freeze=lambda: calls.append("f"), unfreeze=lambda: calls.append("u"))
    for _ in range(3):
        policy.after_slice()
    policy.after_close()
    policy.after_close()
    assert calls == ["f", "f", "f", "f", "u"] and policy.closes == 2
