"""Bucket closing, watermark, lateness and DST-stable local slots."""

from datetime import UTC, datetime

from streams.demand.buckets import BucketAccumulator, BucketConfig, bucket_start_ms, iso_utc, local_slot

MIN = 60_000


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp() * 1000)


def test_bucket_start_is_utc_aligned() -> None:
    t = ms(2024, 3, 1, 10, 7)
    assert bucket_start_ms(t, 300) == ms(2024, 3, 1, 10, 5)
    assert iso_utc(bucket_start_ms(t, 300)) == "2024-03-01T10:05:00Z"


def test_buckets_close_when_watermark_passes_and_emit_zeros() -> None:
    acc = BucketAccumulator(BucketConfig(bucket_s=300, lateness_s=600))
    t0 = ms(2024, 3, 1, 10, 0)
    assert acc.add("a", t0, 2) == []
    assert acc.add("a", t0 + 1 * MIN, 3) == []
    assert acc.add("b", t0 + 4 * MIN, 1) == []
    # Watermark = t0 + 15 min - 10 min = t0 + 5 min: closes [t0, t0+5m) for both keys.
    out = acc.add("a", t0 + 15 * MIN, 1)
    assert [(b.key, b.bucket_start_ms, b.count) for b in out] == [("a", t0, 5.0), ("b", t0, 1.0)]
    # Idle heartbeat: keys seen before get zero buckets so collapses are visible.
    out = acc.advance(t0 + 25 * MIN)
    assert [(b.key, (b.bucket_start_ms - t0) // MIN, b.count) for b in out] == [
        ("a", 5, 0.0), ("b", 5, 0.0), ("a", 10, 0.0), ("b", 10, 0.0)
    ]
    assert acc.watermark_ms == t0 + 15 * MIN


def test_late_data_is_flagged_not_dropped() -> None:
    acc = BucketAccumulator(BucketConfig(bucket_s=300, lateness_s=300))
    t0 = ms(2024, 3, 1, 10, 0)
    acc.add("a", t0, 1)
    acc.add("a", t0 + 20 * MIN, 1)
    # Within lateness: bucket [t0+15m, t0+20m) is still open.
    assert all(not b.late for b in acc.add("a", t0 + 16 * MIN, 1))
    late = [b for b in acc.add("a", t0 + 2 * MIN, 4) if b.late]
    assert [(b.bucket_start_ms, b.count) for b in late] == [(t0, 4.0)]
    assert acc.late_count == 1


def test_snapshot_roundtrip() -> None:
    acc = BucketAccumulator()
    t0 = ms(2024, 3, 1)
    acc.add("a", t0, 1)
    acc.add("a", t0 + 7 * MIN, 2)
    clone = BucketAccumulator.from_snapshot(acc.snapshot())
    assert acc.advance(t0 + 60 * MIN) == clone.advance(t0 + 60 * MIN)


def test_local_slot_is_stable_across_dst() -> None:
    # Monday 09:00 New York before (EST, UTC-5) and after (EDT, UTC-4) 10 March 2024.
    before = ms(2024, 3, 4, 14, 0)
    after = ms(2024, 3, 11, 13, 0)
    tz = "America/New_York"
    assert local_slot(before, tz, 1800) == local_slot(after, tz, 1800) == (9 * 3600) // 1800
    # The same UTC instant a week later is a different local slot after the change.
    assert local_slot(before + 7 * 86_400_000, tz, 1800) != local_slot(before, tz, 1800)
    assert local_slot(after, tz, 1800, period_s=86400) == 18
