"""Ingest: raw bytes in, validated and normalised touchpoints (or dead letters) out."""
