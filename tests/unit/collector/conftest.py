"""Shares the collector test app's ``make`` fixture with every module of this package."""

from tests.unit.collector.test_app import make  # noqa: F401 - a fixture
