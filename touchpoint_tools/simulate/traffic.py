"""Synthetic touchpoint traffic as raw records: the population's events, plus replays and
malformed records on request. Used by `touchpoint simulate`/`demo` and the benchmark harness
(tooling imports it from here, not from the CLI)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Protocol

import orjson

from touchpoint_tools.simulate.population import SCENARIOS, Population

__all__ = ["TrafficSpec", "MALFORMED", "generate", "default_start_ms"]

# One of each dead-letter path: not JSON, not an object, no messageId, an unknown type.
MALFORMED = (b"{not json", b"[1,2,3]", b'{"type":"track","event":"No id"}', b'{"type":"shout","messageId":"bad-type"}')


class TrafficSpec(Protocol):
    """What to generate (the `touchpoint simulate` options carry these attributes)."""

    people: int
    seed: int
    scenario: str
    events: int
    spacing_ms: float
    duplicates: float
    malformed: float


def generate(spec: TrafficSpec, start_ms: int, scenario_start_ms: int | None = None) -> Iterator[bytes]:
    """The records to publish; the scenario's shifts are timed from ``scenario_start_ms`` (default: the start)."""
    population = Population(spec.people, spec.seed)
    scenario = SCENARIOS[spec.scenario](start_ms if scenario_start_ms is None else scenario_start_ms)
    rng = random.Random(spec.seed + 1)
    for event in population.events(spec.events, start_ms, spec.spacing_ms, scenario):
        raw = orjson.dumps(event)
        yield raw
        if rng.random() < spec.duplicates:
            yield raw
        if rng.random() < spec.malformed:
            yield rng.choice(MALFORMED)


def default_start_ms(events: int, spacing_ms: float, now_ms: int) -> int:
    """The first event's time such that the last one lands about ``now_ms``."""
    return int(now_ms - events * spacing_ms / Population.mean_acceptance())
