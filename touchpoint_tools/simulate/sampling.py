"""Random draws shared by the simulator, the benchmarks and the tests."""

from __future__ import annotations

import math
import random

__all__ = ["poisson"]


def poisson(rng: random.Random, lam: float, normal_above: float | None = 30.0) -> int:
    """A Poisson(``lam``) draw: Knuth's product method, a rounded normal above ``normal_above``.

    ``normal_above=None`` always uses Knuth's method (exact, slower for large ``lam``).

    >>> poisson(random.Random(1), 0.0)
    0
    >>> 0 <= poisson(random.Random(1), 4.0) < 30
    True
    """
    if lam <= 0:
        return 0
    if normal_above is not None and lam > normal_above:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
