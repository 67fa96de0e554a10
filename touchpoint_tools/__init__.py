"""Tooling around the runtime, never imported by it: the local Kafka + Redis stack
(:mod:`.devstack`), traffic simulators (:mod:`.simulate`), the benchmarks (:mod:`.bench`: the
end-to-end pipeline bench behind ``touchpoint bench`` in :mod:`.bench.pipeline`, and one script per
focused measurement) and the identity oracle tests compare against (:mod:`.oracle`).

The runtime package ``streams`` never imports this one, except its command line, which is thin over
both (tests/test_architecture.py).
"""
