"""Probes on embeddings and the label-efficiency curve (``radtrust_engine.data_efficiency``): the
probe against scikit-learn, a curve on data with a known learning curve, the paired comparator,
the kNN probe and the MMD drift test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from radtrust_engine.data_efficiency import CurvePoint, fit_logistic, knn_scores, label_efficiency, labelled_to_reach, mmd_test, probe_scores


def _embeddings(n=600, dim=32, signal=1.0, seed=0):
    """Two cases per patient; the label moves the embedding along one direction by ``signal``."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n // 2), 2).astype(str)
    y = np.repeat(rng.random(n // 2) < 0.4, 2).astype(np.int8)
    x = rng.normal(size=(n, dim))
    x[:, 0] += signal * y
    return x, y, patients


def test_the_probe_matches_scikit_learn():
    x, y, _ = _embeddings(n=400)
    train, test = slice(0, 300), slice(300, 400)
    w, b = fit_logistic(x[train], y[train], c=1.0)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(x[train], y[train])
    np.testing.assert_allclose(w, reference.coef_[0], atol=1e-4)
    ours = roc_auc_score(y[test], probe_scores(x[train], y[train], x[test]))
    theirs = roc_auc_score(y[test], reference.predict_proba(x[test])[:, 1])
    assert abs(ours - theirs) <= 1e-9


def test_the_curve_rises_with_labels_and_the_comparator_difference_is_paired():
    x, y, patients = _embeddings(n=600, signal=1.5)
    noise = np.random.default_rng(9).normal(size=x.shape)  # a comparator with nothing to learn
    result = label_efficiency(x, y, patients, comparator=noise, fractions=(0.02, 0.1, 0.5, 1.0), repeats=4, target_auroc=0.8)
    aurocs = [p.auroc for p in result.curve]
    assert aurocs[-1] > 0.8 and aurocs[-1] > aurocs[0]
    assert all(p.ci_low <= p.auroc <= p.ci_high for p in result.curve)
    assert [p.n_labelled for p in result.curve] == sorted(p.n_labelled for p in result.curve)
    assert abs(result.comparator[-1].auroc - 0.5) < 0.1
    assert result.difference[-1].ci_low > 0.2  # the foundation embeddings beat noise, with the CI clear of 0
    for p, d in zip(result.curve, result.difference):
        assert d.auroc == pytest.approx(p.auroc - result.comparator[result.curve.index(p)].auroc)
    assert result.labelled_to_target is not None and result.labelled_to_target <= result.curve[-1].n_labelled
    assert result.comparator_labelled_to_target is None  # noise never reaches 0.8
    assert len(result.curve[0].repeats) == 4


def test_labelled_cases_to_target_are_interpolated():
    curve = [CurvePoint(0.1, 10, 0.6, None, None, ()), CurvePoint(0.5, 50, 0.8, None, None, ()), CurvePoint(1.0, 100, 0.9, None, None, ())]
    assert labelled_to_reach(curve, 0.7) == pytest.approx(30.0)
    assert labelled_to_reach(curve, 0.95) is None and labelled_to_reach(curve, 0.5) == 10


def test_the_knn_probe_ranks_by_neighbours():
    x, y, patients = _embeddings(n=400, signal=3.0)
    scores = knn_scores(x[:300], y[:300], x[300:], k=15)
    assert roc_auc_score(y[300:], scores) > 0.9
    result = label_efficiency(x, y, patients, probe="knn", fractions=(0.25, 1.0), repeats=2)
    assert result.probe == "knn" and result.curve[-1].auroc > 0.85


def test_mmd_detects_a_shift_and_not_its_absence():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(120, 16))
    same = rng.normal(size=(120, 16))
    shifted = rng.normal(size=(120, 16)) + np.r_[0.8, np.zeros(15)]
    assert mmd_test(reference, same, n_permutations=300).p_value > 0.05
    assert mmd_test(reference, shifted, n_permutations=300).p_value < 0.01


def test_mmd_treats_patients_as_the_units():
    rng = np.random.default_rng(2)
    reference = np.repeat(rng.normal(size=(30, 8)), 4, axis=0)  # four identical cases per patient
    patients = np.repeat(np.arange(30), 4).astype(str)
    result = mmd_test(reference, rng.normal(size=(40, 8)), reference_patients=patients, n_permutations=100)
    assert result.n_reference == 30 and result.n_current == 40


def test_too_few_patients_for_the_folds_is_refused():
    x, y, patients = _embeddings(n=8)
    with pytest.raises(ValueError, match="cannot make 5 folds"):
        label_efficiency(x, y, patients)
