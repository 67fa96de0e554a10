"""Shared test configuration: markers and the real-stack fixtures (started once per session)."""

pytest_plugins = ["tests.fixtures.stack"]
