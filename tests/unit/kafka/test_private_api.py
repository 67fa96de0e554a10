"""The one module with private Faust/aiokafka API use (streams/kafka/delivery.py): the pinned
versions are checked at start, and the plain commit goes where it should. Against fakes: the
crash and rebalance tests in tests/system cover the real consumer."""

from __future__ import annotations

from importlib import metadata

import pytest

from streams.kafka.delivery import PINNED, check_pinned_versions, plain_commit


def test_the_installed_versions_are_the_pinned_ones() -> None:
    assert check_pinned_versions() == []


def test_another_version_is_named() -> None:
    def installed(dist: str) -> str:
        if dist == "faust-streaming":
            return "0.16.0"
        if dist == "aiokafka":
            raise metadata.PackageNotFoundError(dist)
        return PINNED[dist]

    assert check_pinned_versions(installed) == ["faust-streaming 0.16.0 installed, 0.15.3 pinned", "aiokafka not installed, 0.14.0 pinned"]


def test_the_pins_match_pyproject() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    for dist, version in PINNED.items():
        assert f'"{dist}=={version}"' in text


class _Consumer:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.seen: list[dict] = []

    async def _commit(self, offsets: dict) -> bool:
        self.seen.append(dict(offsets))
        return self.answer


class _App:
    def __init__(self, answer: bool) -> None:
        self.consumer = _Consumer(answer)


@pytest.mark.parametrize("answer", [True, False])
async def test_plain_commit_hands_the_offsets_to_the_driver(answer: bool) -> None:
    app = _App(answer)
    assert await plain_commit(app, {("t", 0): 5}) is answer
    assert app.consumer.seen == [{("t", 0): 5}]
