"""Drift statistics against scipy and hand-computed values; drift found for a shifted site, not for an unshifted one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from radtrust_engine.drift import (
    PSI_FLOOR,
    DriftInputError,
    distribution_drift,
    image_statistics,
    image_summary,
    prevalence_shift,
    psi_sorted,
)


@pytest.mark.parametrize("seed", range(4))
def test_ks_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, 20_000)
    b = rng.normal(0.05 * seed, 1 + 0.05 * seed, 15_000).round(2)  # ties included
    ours = distribution_drift(a, b, feature="x")
    theirs = stats.ks_2samp(a, b, method="asymp")
    assert ours.ks_statistic == pytest.approx(theirs.statistic, abs=1e-12)
    assert ours.ks_pvalue == pytest.approx(theirs.pvalue, rel=1e-6, abs=1e-300)


def test_psi_by_hand():
    reference = np.sort(np.repeat([1.0, 2.0, 3.0, 4.0], 25))  # quartile edges 2, 3, 4
    current = np.sort(np.repeat([1.0, 2.0, 3.0, 4.0], [10, 20, 30, 40]))
    psi, edges, ref_shares, cur_shares = psi_sorted(reference, current, 4)
    assert edges.tolist() == [2.0, 3.0, 4.0]
    assert ref_shares.tolist() == [0.25] * 4 and cur_shares.tolist() == [0.1, 0.2, 0.3, 0.4]
    expected = sum((a - 0.25) * np.log(a / 0.25) for a in (0.1, 0.2, 0.3, 0.4))
    assert psi == pytest.approx(expected, abs=1e-12)


def test_an_empty_current_bin_is_floored_not_infinite():
    reference = np.sort(np.arange(100.0))
    psi, _, _, cur_shares = psi_sorted(reference, np.sort(np.full(50, 10.0)), 10)
    assert cur_shares[0] == 0 and np.isfinite(psi)
    assert psi == pytest.approx(sum((max(a, PSI_FLOOR) - 0.1) * np.log(max(a, PSI_FLOOR) / 0.1) for a in cur_shares), rel=1e-9)


def test_a_shifted_site_drifts_and_an_unshifted_one_does_not():
    rng = np.random.default_rng(7)
    baseline = rng.normal(100, 15, 5_000)
    same_site = rng.normal(100, 15, 3_000)
    shifted_site = rng.normal(112, 20, 3_000)  # a new detector: brighter and noisier
    unchanged = distribution_drift(baseline, same_site, feature="image_mean")
    changed = distribution_drift(baseline, shifted_site, feature="image_mean")
    assert not unchanged.drifted and unchanged.level == "none" and unchanged.psi < 0.02
    assert changed.drifted and changed.level == "major" and changed.ks_pvalue < 1e-12
    assert changed.current_mean > changed.reference_mean


def test_significance_alone_is_not_drift():
    rng = np.random.default_rng(8)
    result = distribution_drift(rng.normal(0, 1, 400_000), rng.normal(0.02, 1, 400_000), feature="x")
    assert result.ks_pvalue < 0.01 and result.ks_statistic < 0.1 and not result.drifted


def test_bad_samples_are_refused_with_the_reason():
    with pytest.raises(DriftInputError, match="current sample holds 1 NaN"):
        distribution_drift(np.arange(50.0), np.r_[np.arange(49.0), np.nan], feature="score")
    with pytest.raises(DriftInputError, match="has 5 patient"):
        distribution_drift(np.arange(50.0), np.arange(5.0), feature="score")
    with pytest.raises(DriftInputError, match="has 10 patient"):  # 50 images of 10 patients: too few patients
        distribution_drift(np.arange(50.0), np.arange(50.0), feature="score", current_patients=np.arange(50) // 5)
    with pytest.raises(DriftInputError, match="3 patient key"):
        distribution_drift(np.arange(50.0), np.arange(50.0), feature="score", reference_patients=["a", "b", "c"])


def test_image_statistics_per_image():
    batch = np.stack([np.full((1, 8, 8), 2.0), np.arange(64.0).reshape(1, 8, 8)]).astype(np.float32)
    stats_ = image_statistics(batch)
    assert stats_["image_mean"].tolist() == [2.0, 31.5]
    assert stats_["image_std"][0] == 0 and stats_["image_p99"][1] == pytest.approx(np.percentile(np.arange(64.0), 99))


def _images_with_hard_tails() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    side = 512
    rows = np.arange(side * side).reshape(side, side)
    return [
        rng.normal(1800, 600, (side, side)).astype(np.float32),  # a radiograph's noise
        rng.integers(0, 4, (side, side)).astype(np.float32),  # heavy ties at both ends
        np.full((side, side), 7.0, np.float32),  # constant
        np.sort(rng.normal(size=side * side)).reshape(side, side),  # sorted: a regular subsample lies
        (rows % 4096).astype(np.float32),  # periodic with the subsample's stride
        np.where(rows % 97 == 0, 1e6, rows.astype(np.float64)),  # outliers the subsample can miss
        np.where(rows % 64 == 0, -rows, rows).astype(np.float64),  # the subsample holds the lowest values alone
        np.where(rows % 64 == 0, 1e9 + rows, rows).astype(np.float64),  # ... the highest alone
        rng.normal(size=(300, 301)),  # odd sizes, not a power of two
        np.arange(5.0),  # too small to subsample
    ]


@pytest.mark.parametrize("index", range(10))
def test_image_summary_percentiles_are_numpys_to_the_last_bit(index):
    image = _images_with_hard_tails()[index]
    x = image.reshape(-1).astype(np.float64)
    assert image_summary(image) == (float(x.mean()), float(x.std()), *(float(v) for v in np.percentile(x, [1, 99])))


def test_image_summary_keeps_its_scratch_per_thread_and_grows_it_for_larger_images():
    """Images of several types and sizes summarised on four threads at once, each equal to NumPy's figures."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    images = [rng.normal(500, 90, size).astype(dtype) for size in ((64, 64), (600, 500), (40, 30)) for dtype in (np.float32, np.uint16, np.int32)]

    def expected(image):
        x = image.reshape(-1)
        x = x[:: -(-x.size // (1 << 18))].astype(np.float64)
        return (float(x.mean()), float(x.std()), *(float(v) for v in np.percentile(x, [1, 99])))

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(image_summary, images * 8))
    assert got == [expected(image) for image in images * 8]


def test_prevalence_shift_interval():
    shift = prevalence_shift(np.r_[np.ones(30), np.zeros(70)], np.r_[np.ones(60), np.zeros(40)], label="nodule")
    assert (shift.reference, shift.current, shift.difference) == pytest.approx((0.3, 0.6, 0.3))
    assert 0 < shift.ci_low < 0.3 < shift.ci_high < 0.5 and shift.significant
    pooled = 0.45  # the score test by hand: each run's variance about the pooled share, 100 patients each
    z = 0.3 / np.sqrt(2 * pooled * (1 - pooled) / 99)
    assert shift.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    same = prevalence_shift(np.r_[np.ones(30), np.zeros(70)], np.r_[np.ones(31), np.zeros(69)], label="nodule")
    assert not same.significant and same.p_value > 0.5


def test_prevalence_counts_patients_not_images():
    """Four images of each patient, all with the patient's label, carry no more information than
    one: the test and the interval are those of one image per patient, where counting images as
    independent would make them far narrower."""
    reference, current = np.r_[np.ones(12), np.zeros(28)], np.r_[np.ones(20), np.zeros(20)]
    one = prevalence_shift(reference, current, label="nodule")
    four = prevalence_shift(
        np.repeat(reference, 4),
        np.repeat(current, 4),
        label="nodule",
        reference_patients=np.repeat(np.arange(40), 4),
        current_patients=np.repeat(np.arange(40), 4),
    )
    as_images = prevalence_shift(np.repeat(reference, 4), np.repeat(current, 4), label="nodule")
    assert four.p_value == pytest.approx(one.p_value, rel=1e-9) and (four.ci_low, four.ci_high) == pytest.approx((one.ci_low, one.ci_high), rel=1e-9)
    assert four.n_current == 160 and four.n_current_patients == 40
    assert as_images.p_value < one.p_value / 10 and as_images.ci_high - as_images.ci_low < 0.6 * (one.ci_high - one.ci_low)
    assert not four.significant and as_images.significant  # the cluster-blind test calls a shift the data cannot show


def test_ks_is_over_patients_not_images():
    """Per-patient means decide: with a patient's images repeated, the KS test is scipy's exact test
    on the patients, where the same values counted as images look far more certain."""
    rng = np.random.default_rng(10)
    reference, current = rng.normal(0, 1, 30), rng.normal(0.6, 1, 30)
    keys = np.repeat(np.arange(30), 4)
    clustered = distribution_drift(np.repeat(reference, 4), np.repeat(current, 4), feature="x", reference_patients=keys, current_patients=keys)
    theirs = stats.ks_2samp(reference, current, method="exact")
    assert clustered.ks_statistic == pytest.approx(theirs.statistic) and clustered.ks_pvalue == pytest.approx(theirs.pvalue, rel=1e-9)
    assert (clustered.n_reference, clustered.n_reference_patients) == (120, 30)
    as_images = distribution_drift(np.repeat(reference, 4), np.repeat(current, 4), feature="x")
    assert as_images.ks_pvalue < clustered.ks_pvalue / 20
    assert clustered.psi_expected_without_drift == pytest.approx(9 * 2 / 30)  # PSI's bias at the effective size: 30, not 120


def test_an_adjusted_p_value_decides_drift():
    """A lone comparison is a family of one; judged on a larger family's adjusted p-value the same
    change is no longer called drift."""
    rng = np.random.default_rng(11)
    result = distribution_drift(rng.normal(0, 1, 300), rng.normal(0.3, 1, 300), feature="x")
    assert result.drifted and result.ks_pvalue_adjusted == result.ks_pvalue < 0.05 and result.ks_statistic >= 0.1
    judged = result.adjusted(0.2)
    assert not judged.drifted and judged.ks_pvalue == result.ks_pvalue and judged.ks_pvalue_adjusted == 0.2
    assert judged.level == ("moderate" if judged.psi_used and judged.psi >= 0.1 else "none")  # PSI stays a description


def test_small_samples_rest_on_ks_because_psi_is_biased_upward():
    rng = np.random.default_rng(9)
    same = distribution_drift(rng.normal(0, 1, 60), rng.normal(0, 1, 60), feature="x")
    assert not same.psi_used and same.psi_expected_without_drift == pytest.approx(9 * 2 / 60)
    assert not same.drifted  # its PSI alone (noise) would often pass 0.1
    shifted = distribution_drift(rng.normal(0, 1, 60), rng.normal(2, 1, 60), feature="x")
    assert shifted.drifted and shifted.level == "major" and shifted.ks_pvalue < 0.01
    large = distribution_drift(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000), feature="x")
    assert large.psi_used
