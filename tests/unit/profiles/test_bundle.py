"""Bundled profile-events records: one per ingest batch and partition, taken apart by the agent."""

import orjson

from streams.profiles.bundle import MAX_BYTES, MAX_ITEMS, POSITIONS, encode_bundles, key_partition, position, unbundle


def items(n, size=20):
    return [(f"p{i}".encode(), orjson.dumps({"type": "track", "message_id": f"m{i}", "pad": "x" * size})) for i in range(n)]


def test_round_trip_keeps_order_keys_and_values():
    src = items(5)
    ((key, value),) = list(encode_bundles(src))
    assert key == b"p0"  # the first item's key: a re-publish by key lands on the same partition
    assert unbundle(key, value) == [(k, orjson.loads(v)) for k, v in src]


def test_large_batches_are_split_by_count_and_by_bytes():
    many = list(encode_bundles(items(MAX_ITEMS + 10, size=1)))
    assert [len(unbundle(k, v)) for k, v in many] == [MAX_ITEMS, 10]
    big = list(encode_bundles(items(40, size=20_000)))
    assert len(big) > 1 and all(len(v) <= MAX_BYTES + 25_000 for _, v in big)
    assert [m["message_id"] for k, v in big for _, m in unbundle(k, v)] == [f"m{i}" for i in range(40)]
    assert [k for k, _ in big] == [unbundle(k, v)[0][0] for k, v in big]


def test_single_records_and_damaged_bundles_pass_through_as_one_record():
    assert unbundle(b"p1", b'{"control":"erase","profile_id":"p1"}') == [(b"p1", b'{"control":"erase","profile_id":"p1"}')]
    assert unbundle(b"p1", b'{"bundle":[["p1"') == [(b"p1", b'{"bundle":[["p1"')]
    assert unbundle(None, None) == [(None, None)]


def test_positions_order_items_within_and_across_records():
    assert position(7, 0) < position(7, MAX_ITEMS - 1) < position(8, 0) == 8 * POSITIONS


def test_key_partition_is_kafkas_default_partitioner():
    # The producer's default partitioner places a record keyed ``key`` where its bundle goes.
    from aiokafka.partitioner import DefaultPartitioner

    for key in (b"p1", b"p2a", b"user-42", b"\xff\x00"):
        for n in (4, 12):
            assert key_partition(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))


def test_murmur2_equals_the_kafka_clients_on_every_tail_length():
    # the core's own murmur2 (no Kafka client in the core) against aiokafka's, lengths 0-40
    import random

    from aiokafka.partitioner import DefaultPartitioner
    from aiokafka.partitioner import murmur2 as client_murmur2

    from streams.profiles.bundle import murmur2

    rng = random.Random(7)
    for _ in range(3000):
        key = rng.randbytes(rng.randint(0, 40))
        assert murmur2(key) == client_murmur2(key) & 0xFFFFFFFF
        n = rng.randint(1, 64)
        assert key_partition(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))
