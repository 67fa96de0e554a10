"""The graph fixtures of test_identity_graph.py (both kinds of graph, the module's Redis), shared
with the other contract files."""

from tests.contracts.test_identity_graph import make, redis_url

__all__ = ["make", "redis_url"]
