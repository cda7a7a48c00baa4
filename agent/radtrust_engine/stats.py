"""Statistics primitives the engine, the server and the scoring rules share, written once.

``z_value`` is the two-sided normal quantile of a confidence level (1.959963984540054 at
0.95, SciPy's ``norm.ppf(0.975)``); ``wilson_interval`` is the Wilson score interval of a
proportion, clipped to [0, 1]. Plain Python and SciPy (no Django).
"""

from __future__ import annotations

import math
from functools import lru_cache


@lru_cache(maxsize=64)
def z_value(confidence: float = 0.95) -> float:
    """The two-sided standard-normal quantile: ``P(|Z| <= z) = confidence``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    from scipy.stats import norm  # imported on first use: SciPy's stats module is slow to import

    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval for the proportion ``successes / n``; ``(None, None)`` when ``n`` is 0.

    It stays sensible for small and extreme counts (0 of 3, the small bins of a reliability
    diagram) where the normal approximation is not. ``successes`` may be fractional (a
    "partly" answer counting one half). The bounds are clipped to [0, 1], and are exactly 0 at 0
    successes and exactly 1 at ``n``: floating-point rounding otherwise leaves them a hair off
    (0.9999999999999999 for 10 of 10, or a hair below 0)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"a proportion needs 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return None, None
    z = z_value(confidence)
    phat = successes / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # the exact bound at the ends
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mean_interval(n: int, mean: float | None, mean_sq: float | None, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Normal-approximation interval of a mean from its first two moments (the mean and the mean of
    squares, which is what weekly summaries keep); ``(None, None)`` below two values, where the
    spread is unknown (a zero-width interval would claim certainty that one rating cannot give)."""
    if n < 2 or mean is None or mean_sq is None:
        return None, None
    variance = max(mean_sq - mean * mean, 0.0) * n / (n - 1)  # the unbiased sample variance
    half = z_value(confidence) * math.sqrt(variance / n)
    return mean - half, mean + half
