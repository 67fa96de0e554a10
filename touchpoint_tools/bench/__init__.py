"""Every benchmark of the project, in one place.

- :mod:`.pipeline`: the end-to-end bench behind ``touchpoint bench`` (throughput, latency, CPU,
  memory, the peers).
- One script per focused measurement, each runnable as ``python -m touchpoint_tools.bench.<name>``
  (``--help`` says what it prints): NAB scoring (``nab_score``), demand scenarios
  (``demand_scenarios``), M4 forecasting (``forecast_m4``), per-stage costs (``*_cost``), identity,
  collector and lookup load.
"""
