"""Statistics primitives the engine, the server and the scoring rules share, written once.

``z_value`` is the two-sided normal quantile of a confidence level (1.959963984540054 at
0.95, SciPy's ``norm.ppf(0.975)``); ``wilson_interval`` is the Wilson score interval of a
proportion, clipped to [0, 1]; ``bca_interval`` is the bootstrap interval of a metric and
``minimum_detectable_difference`` the smallest difference a test would see at a given power;
``holm_adjust`` adjusts a family of p-values for multiplicity.
Plain Python, NumPy and SciPy (no Django).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


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


def expanded_quantile(confidence: float, n_units: int) -> float:
    """The two-sided normal quantile widened for ``n_units`` resampled units, as in Hesterberg's
    expanded percentile interval: ``sqrt(n / (n - 1)) * t_{n-1}``. A bootstrap draws from the sample
    as if it were the population, so its spread is short by ``sqrt((n - 1) / n)`` and its tails are
    normal where a t is due; both matter at tens of patients (docs/methods.md, gap intervals)."""
    if n_units < 2:
        return z_value(confidence)
    from scipy.stats import t  # imported on first use, as in z_value

    return math.sqrt(n_units / (n_units - 1)) * float(t.ppf(0.5 + confidence / 2.0, n_units - 1))


def bca_interval(
    point: float, samples: np.ndarray, jackknife: np.ndarray, n_units: int, confidence: float = 0.95
) -> tuple[float | None, float | None, int]:
    """Bias-corrected and accelerated (BCa) bootstrap interval, expanded for small samples, and the
    number of finite resamples it rests on; ``(None, None, 0)`` when no resample is finite.

    The percentile interval of a subgroup AUROC at about 60 patients covers the truth only ~92% of
    the time: the bootstrap distribution is skewed and centred off the estimate. BCa moves the
    percentiles by the bias ``z0`` (the share of resamples below the estimate) and the acceleration
    ``a`` (the skewness of the jackknife values ``jackknife``, one per deleted block of units), and
    ``expanded_quantile`` widens it for ``n_units`` units (Efron and Tibshirani 1993, ch. 14).
    """
    low, high, n_valid = bca_intervals(np.array([point]), samples[None, :], jackknife[None, :], n_units, confidence)
    if n_valid[0] == 0:
        return None, None, 0
    return float(low[0]), float(high[0]), int(n_valid[0])


def bca_intervals(
    points: np.ndarray, samples: np.ndarray, jackknife: np.ndarray, n_units: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``bca_interval`` for many statistics of the same units at once (the metrics of a group, of
    every label): ``points`` ``(k,)``, ``samples`` ``(k, resamples)``, ``jackknife`` ``(k, rows)``, NaN
    where a statistic is undefined. Returns the lower and upper bounds (NaN where no resample is
    finite) and the finite resamples of each row: a few array operations instead of a SciPy call
    per bound, which is what a 14-label report's hundreds of intervals cost."""
    from scipy.special import ndtr, ndtri  # norm.cdf and norm.ppf without their per-call checks

    points = np.asarray(points, dtype=np.float64)
    ordered = np.sort(np.where(np.isfinite(samples), samples, np.nan), axis=1)  # undefined ones last
    finite = ~np.isnan(ordered)
    n_valid = np.count_nonzero(finite, axis=1)
    valid = n_valid > 0
    n = np.maximum(n_valid, 1)
    below = (np.count_nonzero(finite & (ordered < points[:, None]), axis=1) + 0.5 * np.count_nonzero(ordered == points[:, None], axis=1)) / n
    z0 = ndtri(np.clip(below, 0.5 / n, 1 - 0.5 / n))
    jack_finite = np.isfinite(jackknife)
    jack_n = np.count_nonzero(jack_finite, axis=1)
    jack = np.where(jack_finite, jackknife, 0.0)
    mean = jack.sum(axis=1) / np.maximum(jack_n, 1)
    spread = np.where(jack_finite, mean[:, None] - jack, 0.0)
    squares = np.sum(spread**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acceleration = np.where(squares > 0, np.sum(spread**3, axis=1) / (6.0 * squares**1.5), 0.0)
    q = expanded_quantile(confidence, n_units)
    bounds = []
    for zq in (-q, q):
        denominator = 1.0 - acceleration * (z0 + zq)
        # An extreme acceleration leaves no defined percentile: take the whole range on that side.
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.where(denominator > 0, ndtr(z0 + (z0 + zq) / denominator), float(zq > 0))
        bounds.append(_linear_percentile(ordered, n, 100 * level / 100))
    low, high = (np.where(valid, b, np.nan) for b in bounds)
    return low, high, n_valid


def _linear_percentile(ordered: np.ndarray, n: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row ``i``'s ``q[i]`` quantile of its first ``n[i]`` (sorted) values, interpolated as
    ``np.percentile``'s default ("linear") method does, to the last bit."""
    virtual = q * (n - 1)
    previous = np.clip(np.floor(virtual), 0, n - 1).astype(np.intp)
    following = np.minimum(previous + 1, n - 1)
    rows = np.arange(ordered.shape[0])
    a, b = ordered[rows, previous], ordered[rows, following]
    gamma = virtual - previous
    difference = b - a
    return np.where(gamma >= 0.5, b - difference * (1 - gamma), a + difference * gamma)


def minimum_detectable_difference(se: float, critical: float, power: float = 0.8) -> float:
    """The smallest true difference that a two-sided test rejecting at ``|estimate| > critical * se``
    detects with probability ``power``: ``(critical + z_power) * se`` (the normal approximation,
    ignoring the far tail)."""
    if not 0.5 < power < 1.0:
        raise ValueError(f"power must be strictly between 0.5 and 1, got {power}")
    return (critical + z_value(2.0 * power - 1.0)) * se


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest of ``m`` is
    ``max_{i <= k} min(1, (m - i + 1) p_(i))``. Rejecting every test whose adjusted value is at
    most ``alpha`` keeps the chance of any false rejection in the family at or below ``alpha``,
    whatever the dependence between the tests (Holm 1979)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
