"""Demand-shift alerts: pure bucketing, detection, alert lifecycle and NAB scoring.

No Kafka, faust or redis here; the streaming app feeds closed buckets in.
"""

from .buckets import BucketAccumulator, BucketConfig, ClosedBucket, bucket_start_ms, iso_utc, local_slot
from .detector import Decision, DemandDetector, DetectorConfig, tail_surprise
from .lifecycle import AlertLifecycle
from .lifecycle_config import ESCALATE, NEW_NORMAL, OPEN, RESOLVED, AlertRecord, LifecycleConfig
from .monitor import DemandMonitor
from .offline import detect_csv

__all__ = [
    "BucketAccumulator",
    "BucketConfig",
    "ClosedBucket",
    "bucket_start_ms",
    "iso_utc",
    "local_slot",
    "Decision",
    "DemandDetector",
    "DetectorConfig",
    "tail_surprise",
    "ESCALATE",
    "NEW_NORMAL",
    "OPEN",
    "RESOLVED",
    "AlertLifecycle",
    "AlertRecord",
    "DemandMonitor",
    "LifecycleConfig",
    "detect_csv",
]
