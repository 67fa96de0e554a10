"""Synthetic but realistic touchpoint traffic: a population across channels, with demand shifts."""
