"""Consumer lag: the arithmetic, the gauge's series lifecycle and which partitions are watched."""

from aiokafka import TopicPartition
from prometheus_client import generate_latest

from streams.observability.lag import LagGauge, LagSampler, compute_lag
from streams.observability.metrics import Metrics
from streams.settings import Settings

A0, A1, B0 = TopicPartition("tp.touchpoints", 0), TopicPartition("tp.touchpoints", 1), TopicPartition("tp.demand-counts", 0)


def test_lag_is_end_minus_committed_and_never_negative():
    assert compute_lag({A0: 100, A1: 50}, {A0: 40, A1: 60}) == {A0: 60, A1: 0}


def test_a_partition_never_committed_is_behind_by_what_the_log_still_holds():
    assert compute_lag({A0: 100, A1: 100}, {A0: -1}, {A0: 30, A1: 0}) == {A0: 70, A1: 100}
    assert compute_lag({A0: 10}, {}) == {A0: 10}


def test_gauge_drops_the_series_of_partitions_this_worker_lost():
    metrics = Metrics()
    gauge = LagGauge(metrics.consumer_lag)
    gauge.publish({A0: 5, A1: 7, B0: 0})
    text = generate_latest(metrics.registry).decode()
    assert 'touchpoint_consumer_lag{partition="1",topic="tp.touchpoints"} 7.0' in text
    gauge.publish({A0: 3})  # a rebalance moved A1 and B0 to another worker
    text = generate_latest(metrics.registry).decode()
    assert 'touchpoint_consumer_lag{partition="0",topic="tp.touchpoints"} 3.0' in text
    assert 'partition="1"' not in text and "demand-counts" not in text


def test_only_the_projects_own_topics_are_watched():
    sampler = LagSampler(Settings.from_env({}, namespace="tp"), "tp.touchpoint")
    assigned = {A0, B0, TopicPartition("tp.touchpoint-demand-changelog", 0), TopicPartition("tp.touchpoint-__assignor-__leader", 0),
                TopicPartition("other.touchpoints", 0)}
    assert sampler.watched(assigned) == [B0, A0]
