"""The Quix Streams peer: an idiomatic Quix Streams application doing our pipeline's work as far
as Quix allows, on the same preloaded topic.

What it does per input record (one message at a time, as Quix processes):

1. ``sdf.apply(prepare)``: the same decode + validate (:func:`streams.ingest.decode.decode`) and
   the same normalisation (:class:`streams.ingest.normalize.Normalizer`: timestamps, identifiers,
   E.164 phones, HMAC of email/phone) as our ingest; invalid records are filtered out.
2. Profiles: ``group_by(profile key)`` (a repartition topic, as Quix's documentation recommends
   when the aggregation key is not the message key), then ``apply(fold, stateful=True)``: the
   profile value is folded with our own :func:`streams.profiles.profile.fold` and kept in Quix
   ``State`` (RocksDB, changelog topic, flushed per checkpoint).
3. Demand: ``apply(dimension keys, expand=True)`` (the same keys as our demand pre-aggregation,
   :func:`streams.demand.dimensions.dimension_keys`), ``group_by(key)`` (a second repartition
   topic), ``set_timestamp(event time)``, ``tumbling_window(bucket, grace=lateness).count().final()``:
   Quix's own windowed count per dimension key, in State.

What it does NOT do, because Quix has no counterpart (stated in the report): identity stitching
(no shared graph across partitions: the profile key is the event's strongest identifier, so one
person with several identifiers gets several profiles), dedup by messageId, merge controls, the
identity audit topic, the dead-letter topic, and our seasonal demand detector (only the windowed
counts it is fed with). Quix commits (and flushes State and changelogs) every 5 s by default;
kept as is.

Timing: from the first record seen to the return of ``Application.run()`` after the last valid
record went through both branches, so the final checkpoint (producer flush, State and changelog
flush, offset commit) that ``run()`` makes on stopping is inside the window, as the final commits
are in ours. ``processed_s`` is the window without it (first record to the last one processed).
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from typing import Any

import orjson

from streams.demand.dimensions import dimension_keys, parse_dimensions
from streams.events.model import IDENTIFIER_TYPES, format_identifier
from streams.events.reasons import Rejected
from streams.ingest.decode import decode
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.profiles.profile import fold, new_profile
from streams.settings import Settings
from touchpoint_tools.bench.pipeline.peers import peer_args, peer_result

_RANK = {t: i for i, t in enumerate(IDENTIFIER_TYPES)}  # user_id first ... anonymous_id, order_id last


class Progress:
    """Counters shared by the steps; the app stops once every valid record went through both branches."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.seen = self.valid = self.dims = 0
        self.profiled = self.counted = 0
        self.first_t: float | None = None
        self.first_cpu = 0.0
        self.end_t: float | None = None
        self.end_cpu = 0.0

    def done(self) -> bool:
        return self.seen >= self.expect and self.profiled >= self.valid and self.counted >= self.dims


def build(app: Any, settings: Settings, topic_name: str, progress: Progress) -> None:
    normalizer = Normalizer(PiiHasher(settings.pii_key), settings.default_phone_region, settings.max_clock_skew_s * 1000)
    dims = parse_dimensions(settings.demand_dimensions)
    bucket = timedelta(seconds=settings.demand_bucket_s)
    max_bytes = settings.max_event_bytes

    def check_done() -> None:
        if progress.end_t is None and progress.done():
            progress.end_t, progress.end_cpu = time.perf_counter(), time.process_time()
            app.stop()

    def prepare(raw: bytes) -> dict[str, Any] | None:
        if progress.first_t is None:
            progress.first_t, progress.first_cpu = time.perf_counter(), time.process_time()
        progress.seen += 1
        event = decode(raw, max_bytes)
        out = None
        if not isinstance(event, Rejected):
            tp = normalizer.normalize(event, time.time_ns() // 1_000_000)
            if not isinstance(tp, Rejected) and tp.identifiers:
                out = tp.to_dict()
                out["pk"] = format_identifier(min(tp.identifiers, key=lambda i: _RANK.get(i[0], 99)))
                out["dk"] = sorted(dimension_keys(tp, dims))
                progress.valid += 1
                progress.dims += len(out["dk"])
        check_done()  # the last records may all be invalid
        return out

    def fold_profile(value: dict[str, Any], state: Any) -> dict[str, Any]:
        profile = state.get("profile") or new_profile()
        fold(profile, value)
        state.set("profile", profile)
        return value

    def profiled(value: dict[str, Any]) -> None:
        progress.profiled += 1
        check_done()

    def counted(value: dict[str, Any]) -> None:
        progress.counted += 1
        check_done()

    topic = app.topic(topic_name, key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(prepare).filter(lambda v: v is not None)

    profiles = sdf.group_by(lambda v: v["pk"], name="profile")
    profiles = profiles.apply(fold_profile, stateful=True)
    profiles.update(profiled)

    demand = sdf.apply(lambda v: [{"k": k, "ts": v["ts_ms"]} for k in v["dk"]], expand=True)
    demand = demand.group_by(lambda v: v["k"], name="demand")
    demand = demand.set_timestamp(lambda value, key, timestamp, headers: value["ts"])
    demand = demand.update(counted)
    demand.tumbling_window(bucket, grace_ms=timedelta(seconds=settings.demand_lateness_s)).count().final()


def main() -> int:
    args = peer_args(__doc__.splitlines()[0]).parse_args()
    import quixstreams
    from quixstreams import Application

    settings = Settings.from_env()
    progress = Progress(args.expect)
    app = Application(broker_address=settings.kafka_bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      state_dir=args.state_dir or f"/tmp/{args.group}-state", loglevel="WARNING")
    build(app, settings, args.topic, progress)
    timer = threading.Timer(args.timeout, app.stop)
    timer.daemon = True
    timer.start()
    app.run()  # returns after the final checkpoint (Application._run_dataframe: commit_checkpoint(force=True))
    end_t, end_cpu = time.perf_counter(), time.process_time()
    timer.cancel()
    timed_out = progress.end_t is None
    if progress.first_t is None:
        result = peer_result(0, 0, 0.0, 0.0, True, peer="quixstreams", version=quixstreams.__version__)
    else:
        processed_s = (progress.end_t or end_t) - progress.first_t
        result = peer_result(progress.seen, progress.valid, end_t - progress.first_t, end_cpu - progress.first_cpu,
                             timed_out, peer="quixstreams", version=quixstreams.__version__,
                             repartitioned_per_event=(progress.valid + progress.dims) / max(1, progress.seen),
                             processed_s=processed_s, final_checkpoint_s=end_t - (progress.end_t or end_t))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if not timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
