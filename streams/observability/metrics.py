"""Every Prometheus metric of a worker, defined once, in the project's own registry.

Label values come only from bounded sets (outcomes, reason codes, topics, partitions), never
from ids or PII (invariant 7). Hot paths bind label children once (``.labels()`` costs ~1 us,
a bound child's ``inc()`` ~0.25 us).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from streams.demand.dimensions import DIMENSIONS, MEASURES
from streams.events.reasons import Reason
from streams.identity.model import CHANGE_TYPES

__all__ = ["Metrics"]

# No `*_created` series (the PROMETHEUS_DISABLE_CREATED_SERIES behaviour): they double the series
# count and no rule or dashboard of ours reads them. Process-wide, so set where metrics are defined.
disable_created_metrics()

OUTCOMES = ("applied", "duplicate", "dead_lettered", "erased")
ALERT_DIRECTIONS = ("surge", "collapse")
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The worker's metrics; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("touchpoint_events", "Input records by outcome.", ["outcome"], registry=r)
        self.dead_letters = Counter("touchpoint_dead_letters", "Records sent to the dead-letter topic, by reason.", ["reason"], registry=r)
        self.batch_seconds = Histogram("touchpoint_stage_seconds", "Processing time of one batch or event, by stage.", ["stage"], registry=r)
        self.event_lag = Histogram("touchpoint_event_lag_seconds", "Event time to processed.", buckets=_LAG_BUCKETS, registry=r)
        self.consumer_lag = Gauge("touchpoint_consumer_lag", "Records behind the end of the log, per topic and partition.", ["topic", "partition"], registry=r)
        self.ordering = Counter("touchpoint_ordering_events", "Records the in-order guard skipped as re-deliveries (replay), and rewinds over a gap, by stage.", ["stage", "what"], registry=r)
        self.dependency_retries = Counter("touchpoint_dependency_retries", "Retries while a dependency (redis, kafka) was unavailable.", ["dependency"], registry=r)
        # Demand-shift detection (labels: dimension type, direction, lifecycle state - bounded sets).
        self.demand_alerts_open = Gauge("touchpoint_demand_alerts_open", "Demand-shift alerts currently open, by dimension type, measure and direction.", ["dimension", "measure", "direction"], registry=r)
        self.demand_alert_transitions = Counter("touchpoint_demand_alert_transitions", "Demand alert lifecycle records emitted, by state and measure.", ["state", "measure"], registry=r)
        self.demand_uncounted = Counter("touchpoint_demand_uncounted", "Events left out of the demand measures on purpose: repeated_order (an order id counted before), skipped_currency (revenue in another currency).", ["reason"], registry=r)
        self.demand_late_counts = Counter("touchpoint_demand_late_counts", "Partial demand counts that arrived after their bucket had closed (not counted).", registry=r)
        self.demand_replayed_counts = Counter("touchpoint_demand_replayed_counts", "Partial demand counts skipped as re-sent after a crash (source offset already applied).", registry=r)
        self.demand_keys = Gauge("touchpoint_demand_keys", "Dimension keys tracked by this worker's demand stage.", registry=r)
        self.demand_errors = Counter("touchpoint_demand_errors", "Demand-counts records that failed to process (logged and skipped).", registry=r)
        self.demand_shared_errors = Counter("touchpoint_demand_shared_alerts_errors", "Failed reads and writes of the open alerts shared between workers in Redis (corroboration then judges with what was read last).", registry=r)
        self.demand_alerts_forwarded = Counter("touchpoint_demand_alerts_forwarded", "Alert records forwarded to Alertmanager, by outcome.", ["outcome"], registry=r)
        self.identity_merges = Counter("touchpoint_identity_merges", "Profiles merged into another by identity resolution.", registry=r)
        self.identity_changes = Counter("touchpoint_identity_changes", "Identity audit records by type (created, linked, merged, blocked, quarantined, conflict, erased, readmitted).", ["type"], registry=r)
        self.identity_refused = Counter("touchpoint_identity_refused", "Identifiers refused a link, by reason (placeholder value or pattern, invalid or service phone, invalid email, limit:TYPE, unique:TYPE, supernode, ...).", ["reason"], registry=r)
        # Live profiles (labels: record outcome - the bounded set of streams.profiles.stage.OUTCOMES).
        self.profiles = Gauge("touchpoint_profiles", "Live (not merged, not erased) profiles in the partitions this worker owns.", registry=r)
        self.profile_records = Counter("touchpoint_profile_records", "profile-events records by outcome: applied, duplicate, replayed, forwarded, merged, absorbed (a merge folded), erased_dropped, error, ...", ["outcome"], registry=r)
        self.component_size = Histogram("touchpoint_identity_component_size", "Identifiers held by a profile after an update: the size of its identity component (order ids excluded, capped by the profile's identifier limit).",
                                        buckets=(1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50), registry=r)
        self.profile_bytes = Histogram("touchpoint_profile_bytes", "Serialized size of a profile value as written to the table changelog.",
                                       buckets=(256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 16384), registry=r)
        # Hostile input and poisoned state (issue 21): nothing dropped, trimmed or refused silently.
        self.event_time_corrected = Counter("touchpoint_event_time_corrected", "Events whose time lay beyond the event-time window's future side and were applied at their receive time, by reason.", ["reason"], registry=r)
        self.profile_trimmed = Counter("touchpoint_profile_trimmed", "Profile entries not kept or trimmed to keep a value within its limits, by part (trait_name, trait_value, tl, tr, cat, cs, ids).", ["part"], registry=r)
        self.send_failures = Counter("touchpoint_send_failures", "Records Kafka refused or did not acknowledge, by kind: changelog (profile and demand tables, re-sent before the commit), profile-events (dead-lettered), ingest (input re-processed), faust (alerts and other sends through Faust, counted only).", ["kind"], registry=r)
        self.partition_stuck = Gauge("touchpoint_partition_stuck_seconds", "Longest time a source partition of this worker has been failing without completing a record, by stage (0 = none).", ["stage"], registry=r)
        self.demand_future_counts = Counter("touchpoint_demand_future_counts", "Partial demand counts refused because their bucket lies beyond the wall clock plus TOUCHPOINT_EVENT_MAX_FUTURE_S.", registry=r)
        self.event_time_corrected.labels("future").inc(0)
        # Bound children for the hot path.
        self.applied = self.events.labels("applied")
        self.duplicates = self.events.labels("duplicate")
        self.dead_lettered = self.events.labels("dead_lettered")
        self.erased = self.events.labels("erased")
        self.dead_by_reason = {reason: self.dead_letters.labels(reason.value) for reason in Reason}
        self.ingest_batch_seconds = self.batch_seconds.labels("ingest")
        self.identity_change_by_type = {t: self.identity_changes.labels(t) for t in CHANGE_TYPES}
        for reason in Reason:  # expose zeros so rate() works from the first scrape
            self.dead_by_reason[reason].inc(0)
        for state in ("OPEN", "ESCALATE", "RESOLVED", "NEW_NORMAL"):
            for measure in ("orders", "units", "revenue", "interest"):
                self.demand_alert_transitions.labels(state, measure).inc(0)
        # every known (dimension, measure, direction) reads 0 from the start, so "no alert open" is a
        # value and `absent()` means "no data" (Prometheus' advice for known label sets)
        for dimension in DIMENSIONS:
            for measure in MEASURES:
                for direction in ALERT_DIRECTIONS:
                    self.demand_alerts_open.labels(dimension, measure, direction).set(0)
