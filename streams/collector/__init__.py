"""The Segment-compatible HTTP collector: ``touchpoint collect``.

``app`` builds the aiohttp application (routes, auth, limits), ``ratelimit`` is the per-key token
bucket, ``publisher`` the idempotent Kafka producer that answers only after the broker acknowledged.
"""
