"""Building the Faust app and the per-worker context from settings.

This is the only place where settings are translated into Faust's own options. The app is built
by a factory, never at import time, so tests and commands can build as many as they need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust
from redis.asyncio import Redis

from streams.identity.redis_graph import RedisIdentityGraph
from streams.identity.rules_file import rules_from_settings
from streams.ingest.dlq import DlqCodec
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.kafka.client import faust_credentials, metadata_max_age_ms
from streams.kafka.delivery import DirectDeliveryTransport
from streams.observability.metrics import Metrics
from streams.settings import DEV_PII_KEY, Settings
from streams.web import guard

if TYPE_CHECKING:  # built inside create_app (after uvloop is chosen): types only here
    from streams.activation.wiring import Activation
    from streams.demand.stage import DemandStage
    from streams.ingest.stage import IngestStage
    from streams.kafka.batchsource import ConsumerPositions
    from streams.kafka.ordering import OrderedSources
    from streams.observability.lag import LagSampler
    from streams.observability.oncall import OncallReader

__all__ = ["WorkerContext", "create_app", "count_faust_send_errors"]

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What the agents of one worker share: settings, clients, metrics, and the parts one agent
    builds for another (filled in by ``create_app`` and the ``register`` functions, in that order:
    ordered sources, activation, then each agent's stage or table)."""

    settings: Settings
    metrics: Metrics
    redis: Redis
    normalizer: Normalizer
    identity: RedisIdentityGraph
    dlq_codec: DlqCodec
    ordered: OrderedSources | None = None       # our agents' in-order sources and commits (kafka/ordering.py)
    activation: Activation | None = None        # traits, audiences, profile-updates (activation/wiring.py)
    ingest: IngestStage | None = None           # ingest/agent.py
    demand: DemandStage | None = None           # demand/agent.py; read by the /demand views
    profiles_table: Any = None                  # the Faust `profiles` table (profiles/agent.py)
    lag: LagSampler | None = None               # observability/lag.py
    oncall: OncallReader | None = None          # observability/oncall.py
    ingest_positions: ConsumerPositions | None = None  # the ingest service's own consumer, once started (ingest/agent.py)

    def ingest_consumer(self) -> Any:
        """The ingest service's started aiokafka consumer, or None (not started, or no ingest)."""
        return self.ingest_positions.consumer if self.ingest_positions is not None else None

    def sources(self) -> OrderedSources:
        """The ordered sources (set up by ``create_app`` before any agent registers)."""
        if self.ordered is None:
            raise RuntimeError("WorkerContext.ordered is set by create_app before the agents register")
        return self.ordered

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None) -> WorkerContext:
        redis = Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        rules = rules_from_settings(settings)  # TOUCHPOINT_IDENTITY_RULES: one rule set for ingest and the graph
        return cls(
            settings=settings,
            metrics=metrics or Metrics(),
            redis=redis,
            normalizer=Normalizer(PiiHasher(settings.pii_key), settings.default_phone_region, settings.max_clock_skew_s * 1000, rules),
            identity=RedisIdentityGraph(redis, settings.namespace, rules, settings.dedup_ttl_s,
                                        dedup_window_s=settings.dedup_window_s,
                                        dedup_shard_bits=settings.dedup_shard_bits),
            dlq_codec=DlqCodec(settings.pii_key, settings.dlq_encrypt),
        )


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


def create_app(settings: Settings, ctx: WorkerContext | None = None) -> tuple[faust.App, WorkerContext]:
    """A Faust app with every agent and HTTP view of a Touchpoint worker registered."""
    settings.require_pii_key()  # the public default only in development mode
    if settings.pii_key == DEV_PII_KEY:
        log.warning("TOUCHPOINT_DEV_MODE: TOUCHPOINT_PII_KEY is the public development default; never use this in production")
    policy = guard.HostPolicy.build(settings.allowed_hosts, settings.allowed_origins, [settings.web_host, settings.advertised_host])
    ctx = ctx or WorkerContext.build(settings)
    app = faust.App(
        settings.app_id,
        broker=_broker_urls(settings.kafka_bootstrap),
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",  # exactly_once is broken in faust 0.15 (see DESIGN.md)
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
        broker_rebalance_timeout=max(30.0, settings.session_timeout_s * 3),
        producer_linger=0.005,
        producer_max_batch_size=512 * 1024,
        # Never more than the broker and topics accept (checked at start, streams/kafka/limits.py):
        # aiokafka then refuses an oversized record at send(), where the caller sees it.
        producer_max_request_size=settings.max_record_bytes,
        producer_acks=-1,
        consumer_metadata_max_age_ms=metadata_max_age_ms(settings),  # see streams/kafka/client.py
        producer_metadata_max_age_ms=metadata_max_age_ms(settings),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.advertised_host,  # the canonical URL other workers forward profile lookups to
        web_application_options={"middlewares": [guard.middleware(policy)]},  # Host and cross-site checks
        web_port=settings.web_port,
        web_tables_enabled=False,   # faust's /table views would serve table contents unauthenticated
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
    )
    # Same driver, cheaper hand-over of fetched records to the agents (streams/kafka/delivery.py).
    app.transport = DirectDeliveryTransport(app.conf.broker_consumer, app)
    from streams import profiles
    from streams.demand import agent as demand_agent
    from streams.identity import views as identity_views
    from streams.ingest import agent as ingest_agent
    from streams.kafka.ordering import OrderedSources
    from streams.observability import oncall
    from streams.web import demand as demand_views
    from streams.web import views

    count_faust_send_errors(app, ctx.metrics)
    # Our agents' sources are consumed in order and committed by us (streams/kafka/ordered.py).
    ctx.ordered = OrderedSources(app, settings, ctx.metrics)
    ingest_agent.register(app, ctx)
    demand_agent.register(app, ctx)
    from streams.activation import wiring as activation

    activation.prepare(ctx)  # the definitions file (TOUCHPOINT_TRAITS), validated before anything starts
    profiles.register(app, ctx)
    activation.register(app, ctx)  # re-evaluation timer (window slides), members gauge
    from streams.activation import customers

    customers.register(app, ctx)  # /customers?id=TYPE:VALUE page for marketing staff
    views.register(app, ctx)
    demand_views.register(app, ctx)  # /demand page, /demand/keys, /demand/forecast (after the demand agent)
    identity_views.register(app, ctx)
    oncall.register(app, ctx)  # /oncall page and data, consumer-lag sampler
    return app, ctx


def count_faust_send_errors(app: faust.App, metrics: Metrics) -> None:
    """Sends Faust makes for us (alert records; the tables' changelogs are ours, kind "changelog") that Kafka refuses
    or never acknowledges are counted in ``touchpoint_send_failures_total{kind="faust"}`` (Faust
    itself only logs a warning). The delegate's hook is wrapped rather than a Sensor added:
    a sensor's other hooks would run for every record."""
    failed = metrics.send_failures.labels("faust")
    hook = app.sensors.on_send_error

    def on_send_error(producer: Any, exc: BaseException, state: Any) -> None:
        failed.inc()
        hook(producer, exc, state)

    app.sensors.on_send_error = on_send_error  # type: ignore[method-assign]
