"""The pure parts of the dedup window tier (streams/identity/dedup_window.py) and its rebuild."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.identity import dedup_window as W
from streams.identity import keys as K
from streams.identity.graph_image import build_image
from streams.identity.rules import IdentityRules

windows = st.integers(min_value=1, max_value=30 * 86400)
times = st.integers(min_value=0, max_value=4_000_000_000)


@given(windows, times, st.integers(min_value=0, max_value=60 * 86400))
def test_an_id_is_found_for_at_least_one_window_and_its_hash_lives_while_read(window_s: int, t: int, age: int) -> None:
    slice_s = W.slice_seconds(window_s)
    written = W.slice_of(t, slice_s)
    read = written in W.lookup_slices(t + age, slice_s)
    if age < window_s:
        assert read
    if read:  # the hash must still exist whenever a lookup reads it
        assert t + age < W.expires_at(written, slice_s)
    # and it is never kept past 1 + 1/SLICES windows (plus the rounding of the slice)
    assert W.expires_at(written, slice_s) - t <= (W.SLICES + 1) * slice_s


def test_slices_are_a_quarter_window_rounded_up() -> None:
    assert [W.slice_seconds(w) for w in (1, 4, 5, 86400)] == [1, 1, 2, 21600]
    with pytest.raises(ValueError):
        W.slice_seconds(0)


def test_the_digest_is_stable_blake2b_with_an_independent_shard() -> None:
    # pinned: the worker, the Lua script's keys and `identity rebuild` must agree across versions
    d = hashlib.blake2b(b"wk-1/m1", digest_size=16).digest()
    assert W.digest("wk-1/m1", 20) == (385045, d[:10])
    assert W.digest("wk-1/m1", 20)[0] == int.from_bytes(d[10:14], "big") >> 12
    assert W.digest("m1", 0)[0] == 0 and W.digest("m1", 32)[0] == int.from_bytes(
        hashlib.blake2b(b"m1", digest_size=16).digest()[10:14], "big")
    with pytest.raises(ValueError):
        W.digest("m1", 33)


@given(st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=32))
def test_shards_are_in_range(mid: str, bits: int) -> None:
    shard, field = W.digest(mid, bits)
    assert 0 <= shard < 2 ** bits and len(field) == W.FIELD_BYTES


def test_claim_tag_drops_the_topic_only() -> None:
    assert W.claim_tag("ns-1.touchpoints/3/1234") == "3/1234"
    assert W.claim_tag("plain") == "plain"


@pytest.mark.parametrize("rate", [10, 1_000, 15_000, 50_000])
def test_shard_bits_for_keeps_hashes_compact(rate: int) -> None:
    bits = W.shard_bits_for(rate, 86400)
    per_hash = rate * W.slice_seconds(86400) / 2 ** bits
    assert per_hash <= W.LISTPACK_FIELDS
    assert bits == 0 or per_hash > W.LISTPACK_FIELDS / 2  # the fewest such bits


def test_false_duplicates_at_production_rate_are_negligible() -> None:
    population = 15_000 * 86400 * (1 + 1 / W.SLICES)  # the most ids held at 15k events/s, 24 h window
    per_lookup = W.false_duplicate_probability(population, W.shard_bits_for(15_000, 86400))
    assert per_lookup * 15_000 * 86400 < 1e-9  # expected false duplicates per day


def test_rebuild_puts_applied_events_into_the_slice_of_their_record_and_skips_expired_ones() -> None:
    now_ms = 1_764_700_000_000
    events = [({"message_id": "m1", "source": "ns.touchpoints/0/7", "profile_id": "p1"}, now_ms - 1000),
              ({"message_id": "m1", "source": "ns.touchpoints/0/7", "profile_id": "p2"}, now_ms - 500),  # forwarded copy
              ({"message_id": "m2", "source": "ns.touchpoints/1/8", "profile_id": "p1"}, now_ms - 3 * 86400_000),  # too old
              ({"control": "merge", "message_id": "m3", "source": "x/0/1"}, now_ms)]
    img = build_image([], events, IdentityRules(), 900, now_ms=now_ms, dedup_window_s=86400, dedup_shard_bits=8)
    slice_s = W.slice_seconds(86400)
    sl = W.slice_of(now_ms // 1000 - 1, slice_s)
    shard, field = W.digest("m1", 8)
    key = f"{K.WINDOW}{sl}:{shard}"
    assert img.window == {key: {field: "0/7"}}
    assert img.ttl_s[key] == W.expires_at(sl, slice_s) - now_ms // 1000
    assert img.stats["window_ids"] == 1
