"""Kafka plumbing shared by workers and commands: topic layout, client options, admin."""
