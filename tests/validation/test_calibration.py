"""Calibration (ECE, MCE, Brier, reliability bins), TTA uncertainty and selective prediction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from radtrust_engine.calibration import (
    CalibrationInputError,
    calibration_report,
    case_flags,
    coverage_risk,
    predictive_entropy,
    referral_for_target_risk,
    tta_uncertainty,
    wilson_interval,
)
from radtrust_engine.metrics import patient_bootstrap_counts


def _synthetic(seed: int, n: int = 20000, overconfident: bool = False):
    """Labels drawn Bernoulli(p): ``p`` is perfectly calibrated; pushing it
    towards 0/1 (logit x 3) makes an overconfident model of the same data."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, n)
    y = (rng.uniform(size=n) < p).astype(int)
    if overconfident:
        logit = np.log(p / (1 - p))
        p = 1 / (1 + np.exp(-3 * logit))
    return y, p


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------


def test_ece_mce_brier_hand_computed():
    # 2 uniform bins [0, .5], (.5, 1]:
    # bin 0: p .1 .3 -> mean .2, observed 0/2 -> gap .2
    # bin 1: p .6 .8 .9 -> mean .7667, observed 3/3 -> gap .2333
    # ECE = 2/5 * .2 + 3/5 * .2333 = .08 + .14 = .22; MCE = .2333
    # Brier = (.01 + .09 + .16 + .04 + .01) / 5 = .062
    r = calibration_report([0, 0, 1, 1, 1], [0.1, 0.3, 0.6, 0.8, 0.9], n_bins=2, min_bin_count=1)
    assert r.ece.value == pytest.approx(0.22)
    assert r.mce == pytest.approx(0.7 / 3)
    assert r.brier.value == pytest.approx(0.062)
    assert r.bin_edges == [0.0, 0.5, 1.0]
    assert [b.count for b in r.bins] == [2, 3]
    assert r.bins[0].mean_predicted == pytest.approx(0.2)
    assert r.bins[1].observed_frequency == 1.0
    assert r.ece.ci_low is None and r.n_resamples == 0
    assert r.warnings == []


def test_bins_are_right_closed_like_sklearn():
    # p = .5 falls in bin 0 ([0, .5]); p = 0 too.
    # bin 0: p .5 .5 0 -> mean 1/3, observed 2/3 -> gap 1/3; bin 1: p 1 -> observed 0 -> gap 1
    # ECE = 3/4 * 1/3 + 1/4 * 1 = .5; MCE = 1; Brier = (.25 + .25 + 1 + 1) / 4 = .625
    r = calibration_report([0, 1, 1, 0], [0.5, 0.5, 0.0, 1.0], n_bins=2, min_bin_count=1)
    assert [b.count for b in r.bins] == [3, 1]
    assert r.ece.value == pytest.approx(0.5)
    assert r.mce == pytest.approx(1.0)
    assert r.brier.value == pytest.approx(0.625)


def test_wilson_interval_hand_values():
    z = 1.959963984540054
    # 0 successes: [0, z^2 / (n + z^2)]
    lo, hi = wilson_interval(0, 2)
    assert lo == 0.0 and hi == pytest.approx(z * z / (2 + z * z))
    # symmetric around 1/2 for k = n/2
    lo, hi = wilson_interval(5, 10)
    assert lo + hi == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (None, None)


def test_reliability_bin_interval_and_empty_bins():
    r = calibration_report([0, 0], [0.05, 0.1], n_bins=5, min_bin_count=1)
    first = r.bins[0]
    assert (first.ci_low, first.ci_high) == pytest.approx(wilson_interval(0, 2))
    empty = r.bins[3]
    assert empty.count == 0 and empty.mean_predicted is None and empty.ci_low is None
    assert r.mce == pytest.approx(0.075)  # the empty bins are skipped


# ---------------------------------------------------------------------------
# Against scikit-learn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("seed", [0, 1])
def test_reliability_bins_match_sklearn(strategy, seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 1.5, 3000)
    p[:50] = 0.3  # values exactly on uniform edges and ties
    p[50:60] = 0.0
    y = (rng.uniform(size=p.size) < p**0.8).astype(int)
    r = calibration_report(y, p, n_bins=10, strategy=strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy=strategy)
    nonempty = [b for b in r.bins if b.count]
    np.testing.assert_allclose([b.observed_frequency for b in nonempty], prob_true, rtol=1e-12)
    np.testing.assert_allclose([b.mean_predicted for b in nonempty], prob_pred, rtol=1e-12)
    assert sum(b.count for b in r.bins) == p.size
    assert r.brier.value == pytest.approx(brier_score_loss(y, p), rel=1e-12)


# ---------------------------------------------------------------------------
# Synthetic truth and bootstrap
# ---------------------------------------------------------------------------


def test_calibrated_model_has_small_ece_and_overconfident_larger():
    y, p = _synthetic(0)
    patients = np.arange(p.size) // 2
    good = calibration_report(y, p, patient_id=patients, n_resamples=200)
    assert good.ece.value < 0.02
    assert good.ece.ci_low <= good.ece.value <= good.ece.ci_high < 0.03
    assert good.brier.ci_low < good.brier.value < good.brier.ci_high
    assert good.n_resamples == good.ece.n_valid == 200

    y2, p2 = _synthetic(0, overconfident=True)
    bad = calibration_report(y2, p2, patient_id=patients, n_resamples=200)
    assert bad.ece.value > 0.08
    assert bad.ece.ci_low > good.ece.ci_high
    assert bad.brier.value > good.brier.value


def test_bootstrap_reproducible_by_seed_and_chunk_size():
    y, p = _synthetic(3, n=600)
    patients = np.arange(600) % 150
    a = calibration_report(y, p, patient_id=patients, n_resamples=100, seed=7)
    b = calibration_report(y, p, patient_id=patients, n_resamples=100, seed=7, chunk_size=13)
    c = calibration_report(y, p, patient_id=patients, n_resamples=100, seed=8)
    assert a.to_dict() == b.to_dict()
    assert (a.ece.ci_low, a.ece.ci_high) != (c.ece.ci_low, c.ece.ci_high)


def test_bootstrap_resample_equals_report_on_repeated_cases():
    """One resample is the report of the data with each patient's cases
    repeated as often as the patient was drawn."""
    y, p = _synthetic(4, n=300)
    patients = np.arange(300) // 3
    r = calibration_report(y, p, patient_id=patients, n_resamples=1, seed=11)
    counts = patient_bootstrap_counts(np.random.default_rng(11), 100, 1)[0]
    reps = counts[patients].astype(int)
    direct = calibration_report(np.repeat(y, reps), np.repeat(p, reps))
    assert r.ece.ci_low == pytest.approx(direct.ece.value, rel=1e-12)
    assert r.brier.ci_high == pytest.approx(direct.brier.value, rel=1e-12)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_logits_raise_with_activation_message():
    with pytest.raises(CalibrationInputError, match=r"look like logits.*must name an activation"):
        calibration_report([0, 1, 1], [-2.3, 0.4, 3.1])
    with pytest.raises(ValueError, match="logits"):
        coverage_risk([0, 1], [-1.0, 2.0], [0.1, 0.2], threshold=0.5)
    with pytest.raises(CalibrationInputError, match="NaN"):
        calibration_report([0, 1], [0.2, float("nan")])


def test_too_few_cases_warns_without_crashing():
    r = calibration_report([0, 1, 1, 0, 1], [0.1, 0.9, 0.7, 0.2, 0.55], n_bins=10, patient_id=["a", "a", "b", "c", "c"], n_resamples=50)
    assert len(r.warnings) == 1 and "fewer than 10 cases" in r.warnings[0]
    assert [b.sparse for b in r.bins if b.count] == [True] * 5
    assert len(r.bins) == 10
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert "empty bins are skipped" in data["binning"]
    assert data["bins"][4]["mean_predicted"] is None


# ---------------------------------------------------------------------------
# Uncertainty
# ---------------------------------------------------------------------------


def test_predictive_entropy_known_values():
    h = predictive_entropy([0.5, 0.0, 1.0, 0.2])
    assert h[0] == pytest.approx(math.log(2))
    assert h[1] == 0.0 and h[2] == 0.0
    assert h[3] == pytest.approx(scipy_entropy([0.2, 0.8]))
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=20)
    np.testing.assert_allclose(predictive_entropy(probs), scipy_entropy(probs, axis=1))
    assert predictive_entropy(np.full((1, 4), 0.25))[0] == pytest.approx(math.log(4))
    with pytest.raises(CalibrationInputError, match="softmax"):
        predictive_entropy([[0.9, 0.9]])


def test_tta_identical_augmentations_have_zero_mutual_information():
    p = np.array([0.1, 0.5, 0.93])
    u = tta_uncertainty(np.stack([p] * 5))
    np.testing.assert_allclose(u.mean_prob, p)
    np.testing.assert_allclose(u.std, 0.0, atol=1e-15)
    np.testing.assert_allclose(u.entropy, predictive_entropy(p))
    np.testing.assert_allclose(u.mutual_information, 0.0, atol=1e-12)


def test_tta_disagreement_is_mutual_information():
    # Two confident augmentations that disagree: mean .5, entropy ln 2, each
    # augmentation has entropy 0, so all of it is mutual information.
    u = tta_uncertainty([[0.0, 0.5], [1.0, 0.5]])
    np.testing.assert_allclose(u.entropy, [math.log(2), math.log(2)])
    np.testing.assert_allclose(u.mutual_information, [math.log(2), 0.0], atol=1e-12)
    np.testing.assert_allclose(u.std, [0.5, 0.0])
    multi = tta_uncertainty(np.random.default_rng(1).dirichlet(np.ones(3), size=(4, 6)))
    assert multi.mean_prob.shape == (6, 3) and multi.mutual_information.shape == (6,)
    assert (multi.mutual_information >= 0).all()
    assert json.loads(json.dumps(multi.to_dict()))["units"] == "nats"


# ---------------------------------------------------------------------------
# Selective prediction
# ---------------------------------------------------------------------------


def test_referral_hand_case():
    # threshold .5; errors on the two most uncertain cases.
    y = [1, 0, 1, 1, 1]
    p = [0.9, 0.2, 0.8, 0.3, 0.4]  # errors:   0, 0, 0, 1, 1
    u = [0.1, 0.2, 0.3, 0.4, 0.5]
    cr = coverage_risk(y, p, u, threshold=0.5)
    np.testing.assert_allclose(cr.coverage, [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(cr.risk, [0, 0, 0, 0.25, 0.4])
    assert cr.aurc == pytest.approx(0.13) and cr.aurc == pytest.approx(cr.aurc_optimal)

    ref = referral_for_target_risk(cr, 0.25)
    assert ref.reachable and ref.coverage == pytest.approx(0.8)
    assert ref.referred_share == pytest.approx(0.2) and ref.cutoff == 0.4 and ref.n_covered == 4
    assert case_flags(u, ref.cutoff).tolist() == [False, False, False, False, True]
    ref = referral_for_target_risk(cr, 0.1)
    assert ref.coverage == pytest.approx(0.6) and ref.cutoff == 0.3 and ref.risk == 0.0


def test_referral_not_reachable():
    # The most confident case is wrong: risks 1, .5, .33, .25, .2.
    cr = coverage_risk([0, 1, 1, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.9], [0.1, 0.2, 0.3, 0.4, 0.5], threshold=0.5)
    ref = referral_for_target_risk(cr, 0.1)
    assert not ref.reachable and ref.referred_share == 1.0 and ref.cutoff is None
    assert "not reachable" in ref.message
    assert case_flags([0.1, 0.2], ref.cutoff).all()
    json.dumps(ref.to_dict(), allow_nan=False)


def test_tied_uncertainty_is_order_free():
    cr = coverage_risk([1, 0, 1, 0], [0.9, 0.9, 0.9, 0.1], [0.3] * 4, threshold=0.5)
    assert cr.coverage.tolist() == [1.0]
    assert cr.aurc == pytest.approx(0.25)  # expected risk is 1/4 at every coverage


def test_good_uncertainty_ranking_beats_random():
    rng = np.random.default_rng(5)
    y, p = _synthetic(5, n=5000)
    err = (p >= 0.5) != (y == 1)
    informed = err + rng.uniform(0, 0.5, p.size)  # every error is more uncertain
    random = rng.uniform(size=p.size)
    good = coverage_risk(y, p, informed, threshold=0.5)
    bad = coverage_risk(y, p, random, threshold=0.5)
    assert good.aurc == pytest.approx(good.aurc_optimal)
    assert good.aurc < 0.5 * bad.aurc
    # a random ranking's AURC is the error rate on average (one draw is noisy at small coverage)
    random_aurcs = [coverage_risk(y, p, rng.uniform(size=p.size), threshold=0.5).aurc for _ in range(8)]
    assert np.mean(random_aurcs) == pytest.approx(err.mean(), abs=0.02)
    curve = good.to_dict()["curve"]
    assert len(curve) <= 101 and curve[-1]["coverage"] == 1.0
    assert curve[0]["n_covered"] == 1
    # the entropy of the model's own probability is a sensible uncertainty too
    own = coverage_risk(y, p, predictive_entropy(p), threshold=0.5)
    assert own.aurc < bad.aurc
    assert referral_for_target_risk(own, 0.1).referred_share < referral_for_target_risk(bad, 0.1).referred_share
