"""What the profiles stage with activation writes and publishes is a contract: the table values
(changelog), the profile-updates and audiences records, byte for byte. A seeded population (orders,
refunds, merges, duplicates, re-evaluations, interrupted bundles) run through decide and settle must
keep giving exactly these bytes; the digests were taken from the code before the session-10 CPU work
on rendering and encoding (docs/performance.md). A changed digest is a changed output: deliberate
or not, it needs a decision, not a new digest alone."""

import hashlib

import pytest

from streams.activation.definitions import load
from tests.unit.activation.test_decoded import _records, _run

GOLDEN = {
    "docs/activation.example.toml": "e023a93c2aae391a469d3f97eaa5c15de495780de33a6ed32d509578873150e1",
    "": "e44411d9f5bfba69c0b85561205940c365af77086457bdcf5746ede698c0ee52",
}


def _digest(definitions: str, keep_decoded: int) -> str:
    table, outs = _run(_records(1500, seed=11), load(definitions), keep_decoded)
    h = hashlib.sha256()
    for topic, key, value in outs:
        h.update(repr((topic, key, value)).encode())
    for key in sorted(table):
        h.update(key.encode() + b"=" + table[key])
    return h.hexdigest()


@pytest.mark.parametrize("definitions", sorted(GOLDEN))
def test_settled_values_and_records_are_those_of_the_reference(definitions: str) -> None:
    assert _digest(definitions, keep_decoded=64) == GOLDEN[definitions]
    assert _digest(definitions, keep_decoded=0) == GOLDEN[definitions]
