"""Shared test configuration: markers, the real-stack fixtures (started once per session), and
the hypothesis profile.

In CI (``CI`` set, as .ci/run has it) hypothesis draws the same examples on every run, so a
submission's result does not depend on luck; on a developer's machine it explores anew each run
(that is how the identity order-independence counterexample was found, see
tests/unit/identity/test_order_independence.py).
"""

import os

from hypothesis import settings

pytest_plugins = ["tests.fixtures.stack"]

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
