"""``touchpoint bench``: the end-to-end benchmark of the pipeline against the real local broker and Redis.

Modules: :mod:`.stats` (percentiles, pure), :mod:`.report` (the human table and the JSON line,
pure), :mod:`.procstat` (CPU and RSS of processes from /proc), :mod:`.workload` (the preloaded
event mix and the paced producer), :mod:`.workers` (``touchpoint worker`` subprocesses),
:mod:`.topics` (offsets, record counts, changelog sizes), :mod:`.harness` (one whole run: the
drains and their order), :mod:`.latency` (the latency run), :mod:`.figures` (memory, hops, batching
of one drain), :mod:`.machine` (machine, broker and Redis pids), :mod:`.peering` (running a peer),
:mod:`.pyspy` (py-spy collapsed stacks -> top costs), :mod:`.peers` (the decode-only floor, the
no-framework reference and the Quix Streams application, each run as its own process). See
docs/performance.md.
"""
