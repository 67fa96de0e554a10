"""Activation: computed traits, real-time audiences, the public profile-updates stream and the
destinations they are forwarded to (docs/activation.md).

Pure: :mod:`.definitions` (the TOUCHPOINT_TRAITS file), :mod:`.expr` (audience expressions),
:mod:`.traits`, :mod:`.audiences`, :mod:`.stage`. Adapters: :mod:`.destinations`,
:mod:`.forwarder`. Wiring: :mod:`.wiring` (profiles-agent hooks, timer, gauge),
:mod:`.customers` (the customer page).
"""
