"""The ``touchpoint`` command line: one module per command group."""
