"""The demo's crisis traffic without Kafka: the same events, their demand sums, the demand stage, and
the simulator's ground truth per series (pure; `touchpoint demo` prints the check, tests replay it).

**Ground truth.** Every event of the simulator has a category and a region, and the crisis multiplies
the rate of a (category, region) pair. A series (dimension key, measure) sums contributions of many
such pairs: its expected multiplier at time ``t`` is ``sum(share[c, r] * factor(c, r, t))``, the shares
being what each pair contributed to the series before the crisis. A series *shifted* while that
multiplier is at least ``1 + MIN_SHIFT`` (surge) or at most ``1 / (1 + MIN_SHIFT)`` (collapse): the
20 % the lifecycle asks of a level before it alerts. An alert *matches* a real shift when its series
shifted in the alert's direction at some time between a day before the alert's shift began and the
alert's publication (the detector needs a few buckets; a surge that ended and then reads as a
collapse does not match).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streams.demand.dimensions import event_measures
from streams.demand.pending import PendingCounts
from streams.demand.series import series_key
from streams.demand.stage import DemandStage, StageConfig
from touchpoint_tools.simulate.population import FOREVER_MS, Population, Scenario, crisis
from touchpoint_tools.simulate.report import AlertStory, stories

__all__ = ["MIN_SHIFT", "DAY_MS", "CrisisRun", "Truth", "ground_truth", "replay", "Verdict", "check_alerts", "shift_lines",
           "shift_keys"]

MIN_SHIFT = 0.2
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class CrisisRun:
    """One crisis simulation as ``touchpoint demo`` times it: four normal days, then the crisis,
    about eight and a half days of event time in all."""

    events: int
    seed: int
    start_ms: int
    people: int = 2000

    @property
    def span_ms(self) -> int:
        return 8 * DAY_MS + DAY_MS // 2

    @property
    def crisis_ms(self) -> int:
        return self.start_ms + 4 * DAY_MS

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.span_ms

    @property
    def spacing_ms(self) -> float:
        # The crisis adds events (surges repeat them): spread the count over a longer nominal span
        # so the event time still reaches about the end of the crisis's fifth day.
        return Population.arrival_spacing_ms(self.events, self.span_ms * 1.15)

    @classmethod
    def ending_now(cls, events: int, seed: int, now_ms: int, people: int = 2000) -> CrisisRun:
        start = now_ms - (8 * DAY_MS + DAY_MS // 2)
        return cls(events, seed, start - start % HOUR_MS, people)

    def scenario(self) -> Scenario:
        return crisis(self.crisis_ms)

    def raw_events(self) -> Iterator[dict[str, Any]]:
        """The simulator's events (what ``touchpoint demo`` publishes, before duplicates and
        malformed records are mixed in)."""
        return Population(self.people, self.seed).events(self.events, self.start_ms, self.spacing_ms, self.scenario())


def _touchpoints(run: CrisisRun) -> Iterator[Any]:
    from streams.ingest.normalize import Normalizer
    from streams.ingest.pii import PiiHasher

    normalizer = Normalizer(PiiHasher("crisis-replay"), "CN")
    for event in run.raw_events():
        t = normalizer.normalize(event, 0)
        if hasattr(t, "ts_ms"):
            yield t


@dataclass
class Truth:
    """Expected multiplier of each series under the scenario (see the module docstring)."""

    scenario: Scenario
    shares: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)  # series -> (cat, region) -> share

    def multiplier(self, skey: str, ts_ms: int) -> float:
        shares = self.shares.get(skey)
        if not shares:
            return 1.0
        return sum(w * self.scenario.factor(c, r, ts_ms) for (c, r), w in shares.items())

    def shifted(self, skey: str, direction: str, from_ms: int, to_ms: int) -> bool:
        """The series' multiplier was beyond the 20 % threshold in ``direction`` at some hour of [from, to]."""
        bounds = sorted({from_ms, to_ms} | {t for s in self.scenario.shifts for t in (s.start_ms, s.end_ms)
                                            if from_ms <= t <= to_ms and t < FOREVER_MS})
        for t in bounds:
            m = self.multiplier(skey, t)
            if (direction == "surge" and m >= 1 + MIN_SHIFT) or (direction == "collapse" and m <= 1 / (1 + MIN_SHIFT)):
                return True
        return False


def ground_truth(run: CrisisRun, dimensions: Iterable[str], measures: Iterable[str], currency: str = "CNY") -> Truth:
    """Shares of each (category, region) in each series, from the events before the crisis."""
    dims, meas = tuple(dimensions), tuple(measures)
    sums: defaultdict[str, defaultdict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for t in _touchpoints(run):
        if t.ts_ms >= run.crisis_ms:
            break
        tag = (t.category or "", t.region or "")
        for (key, measure), v in event_measures(t, dims, meas, currency).items():
            sums[series_key(key, measure)][tag] += v
    shares = {}
    for skey, per in sums.items():
        total = sum(per.values())
        if total > 0:
            shares[skey] = {tag: v / total for tag, v in per.items()}
    return Truth(run.scenario(), shares)


def replay(run: CrisisRun, config: StageConfig, dimensions: Iterable[str], partitions: int = 4,
           batch: int = 1000) -> list[dict[str, Any]]:
    """The alert records the demand stage emits on the run's traffic, fed as the ingest agent feeds
    it: sums of ``batch`` events at a time, per demand partition (the key's hash)."""
    stage = DemandStage(config, {}, {})
    pending = PendingCounts(tuple(dimensions), config.measures)
    alerts: list[dict[str, Any]] = []

    def flush() -> None:
        for key, value in pending.take().records():
            alerts.extend(stage.handle(zlib.crc32(key) % partitions, value).alerts)

    buffered: list[Any] = []
    for i, t in enumerate(_touchpoints(run)):
        buffered.append(t)
        if len(buffered) >= batch:
            pending.add(0, i, buffered, config.bucket_s)
            buffered = []
            flush()
    if buffered:
        pending.add(0, run.events, buffered, config.bucket_s)
        flush()
    return alerts


@dataclass
class Verdict:
    """Every alert story of a run, split by whether the simulator's truth shifted its series."""

    matched: list[AlertStory]
    unmatched: list[AlertStory]

    @property
    def total(self) -> int:
        return len(self.matched) + len(self.unmatched)


def check_alerts(records: list[dict[str, Any]], truth: Truth) -> Verdict:
    """Split the published alerts into those on a real shift of their series and the others."""
    matched: list[AlertStory] = []
    unmatched: list[AlertStory] = []
    for story in stories(records):
        skey = series_key(story.key, story.measure)
        real = truth.shifted(skey, story.direction, story.opened_ms - DAY_MS, story.published_ms)
        (matched if real else unmatched).append(story)
    return Verdict(matched, unmatched)


def shift_lines(verdict: Verdict, scenario: Scenario, end_ms: int) -> list[str]:
    """Per injected shift, the verdict on its own series (category, or category x region for a
    regional one), per measure: persisted (NEW_NORMAL), resolved, still open, or missed."""
    out = []
    for shift in scenario.shifts:
        key = f"category_region:{shift.category}|{shift.region}" if shift.region else f"category:{shift.category}"
        direction = "surge" if shift.factor > 1 else "collapse"
        held = min(shift.end_ms, end_ms) - shift.start_ms
        want = "NEW_NORMAL" if held > 3 * DAY_MS and shift.end_ms > end_ms else "RESOLVED" if shift.end_ms <= end_ms else "open"
        mine = [s for s in verdict.matched if s.key == key and s.direction == direction]
        said = []
        for s in sorted(mine, key=lambda s: (s.measure, s.opened_ms)):
            end = s.state if s.ended_ms is not None else "still open"
            delay_h = (s.published_ms - shift.start_ms) / HOUR_MS
            said.append(f"{s.measure} {end} (alerted {delay_h:+.0f} h)")
        verdict_text = "; ".join(said) if said else "no alert"
        out.append(f"{key} x{shift.factor:g}: wanted {want}: {verdict_text}")
    return out


def shift_keys(verdict: Verdict, truth: Truth) -> dict[tuple[str, str, str], list[str]]:
    """What a planner was told: per (injected shift, dimension key, direction), the measures of
    the real alerts on it. An alert counts for every injected shift in its direction that was on
    between a day before its shift began and its publication and that moved a (category, region)
    pair its series sums. A units alert lost where the same key still has an orders or interest
    alert on that shift loses the planner nothing; a (shift, key) left with no alert does.

    >>> from dataclasses import replace
    >>> from touchpoint_tools.simulate.population import Scenario, Shift
    >>> masks = Shift("masks", 5.0, 10 * HOUR_MS, 34 * HOUR_MS, "hubei")
    >>> truth = Truth(Scenario("t", (masks,)), {"units/region:hubei": {("masks", "hubei"): 0.4},
    ...                                         "orders/region:hubei": {("masks", "hubei"): 0.4}})
    >>> story = AlertStory("a", "region:hubei", "units", "surge", 12 * HOUR_MS, 14 * HOUR_MS)
    >>> shift_keys(Verdict([story, replace(story, measure="orders")], []), truth)
    {('masks|hubei x5', 'region:hubei', 'surge'): ['orders', 'units']}
    """
    out: dict[tuple[str, str, str], list[str]] = {}
    for story in verdict.matched:
        shares = truth.shares.get(series_key(story.key, story.measure), {})
        for shift in truth.scenario.shifts:
            if (shift.factor > 1) != (story.direction == "surge"):
                continue
            if not (shift.start_ms <= story.published_ms and shift.end_ms >= story.opened_ms - DAY_MS):
                continue
            if not any(c == shift.category and (shift.region is None or r == shift.region) for c, r in shares):
                continue
            label = f"{shift.category}|{shift.region or '*'} x{shift.factor:g}"
            out.setdefault((label, story.key, story.direction), []).append(story.measure)
    return {k: sorted(v) for k, v in sorted(out.items())}
