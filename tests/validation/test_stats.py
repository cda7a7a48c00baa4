"""The statistics primitives every layer shares (``radtrust_engine.stats``): the normal quantile
and the Wilson score interval, against statsmodels when it is installed, else against the
closed form (the interval's bounds are the roots of Wilson's quadratic)."""

from __future__ import annotations

import math
import statistics
import sys
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from radtrust_engine.stats import mean_interval, wilson_interval, z_value

counts = st.integers(min_value=1, max_value=10**6).flatmap(lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))
# "partly" feedback counts one half: successes on a grid of halves
half_counts = st.integers(min_value=1, max_value=10**5).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=2 * n).map(lambda k: k / 2), st.just(n))
)
confidences = st.floats(min_value=0.5, max_value=0.999)


def test_z_value_at_95_percent():
    assert z_value(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_value() == z_value(0.95)


@given(confidences)
def test_z_value_is_the_two_sided_normal_quantile(confidence):
    z = z_value(confidence)
    assert NormalDist().cdf(z) - NormalDist().cdf(-z) == pytest.approx(confidence, abs=1e-12)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_z_value_refuses_a_confidence_outside_0_1(confidence):
    with pytest.raises(ValueError, match="confidence"):
        z_value(confidence)


@settings(max_examples=300)
@given(st.one_of(counts, half_counts), confidences)
def test_wilson_bounds_lie_in_0_1_and_hold_the_point_estimate(count, confidence):
    successes, n = count
    low, high = wilson_interval(successes, n, confidence)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    if successes == 0:
        assert low == 0.0
    if successes == n:
        assert high == 1.0


@settings(max_examples=300)
@given(counts, confidences)
def test_wilson_bounds_are_the_roots_of_the_score_quadratic(count, confidence):
    """Closed form: p is in the interval iff |phat - p| <= z sqrt(p (1 - p) / n); the bounds solve
    (n + z^2) p^2 - (2 n phat + z^2) p + n phat^2 = 0."""
    successes, n = count
    z, phat = z_value(confidence), successes / n
    a, b, c = n + z * z, -(2 * n * phat + z * z), n * phat * phat
    root = math.sqrt(b * b - 4 * a * c)
    expected = ((-b - root) / (2 * a), (-b + root) / (2 * a))
    assert wilson_interval(successes, n, confidence) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=300)
@given(counts, confidences)
def test_wilson_is_symmetric_in_successes_and_failures(count, confidence):
    successes, n = count
    low, high = wilson_interval(successes, n, confidence)
    mirror_low, mirror_high = wilson_interval(n - successes, n, confidence)
    assert (low, high) == pytest.approx((1 - mirror_high, 1 - mirror_low), abs=1e-12)


@settings(max_examples=300)
@given(counts, confidences)
def test_wilson_agrees_with_statsmodels(count, confidence):
    successes, n = count
    expected = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    assert wilson_interval(successes, n, confidence) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (5, 10, (0.2365931, 0.7634069)),  # the textbook 95% Wilson interval of 5 of 10
        (0, 10, (0.0, 0.2775328)),  # 0 of n: [0, z^2 / (n + z^2)]
        (10, 10, (0.7224672, 1.0)),  # n of n: [n / (n + z^2), 1]
        (0, 2, (0.0, 1.959963984540054**2 / (2 + 1.959963984540054**2))),
    ],
)
def test_wilson_known_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert (low, high) == pytest.approx(expected, abs=1e-7)
    assert (successes > 0 or low == 0.0) and (successes < n or high == 1.0)  # exact at the ends


def test_wilson_of_no_observations_is_undefined_and_bad_counts_are_refused():
    assert wilson_interval(0, 0) == (None, None)
    for successes, n in ((3, 2), (-1, 5), (0, -1), (math.nan, 5)):
        with pytest.raises(ValueError, match="proportion"):
            wilson_interval(successes, n)


@settings(max_examples=200)
@given(st.lists(st.floats(min_value=-100, max_value=100, allow_nan=False), min_size=2, max_size=60))
def test_mean_interval_from_moments_matches_the_t_free_normal_interval(values):
    n = len(values)
    mean = sum(values) / n
    mean_sq = sum(v * v for v in values) / n
    low, high = mean_interval(n, mean, mean_sq)
    sd = statistics.stdev(values)
    half = z_value(0.95) * sd / math.sqrt(n)
    # From moments the variance is mean_sq - mean², which cancels: its rounding error is up to about
    # 2 (n + 1) eps mean_sq, and |sqrt(a) - sqrt(b)| <= sqrt(|a - b|), so near-equal values of size
    # 100 legitimately give a half-width off by a few 1e-6 (an absolute 1e-6 failed on them).
    rounding = z_value(0.95) * math.sqrt(2 * (n + 1) * sys.float_info.epsilon * mean_sq / (n - 1)) + 1e-12
    assert low <= mean <= high
    assert (low, high) == pytest.approx((mean - half, mean + half), abs=rounding)


def test_mean_interval_refuses_a_single_value():
    assert mean_interval(1, 4.0, 16.0) == (None, None)
    assert mean_interval(0, None, None) == (None, None)
