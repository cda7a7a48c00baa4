"""Paired bootstrap of metric changes under perturbation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radtrust_engine.robustness import paired_metric_changes


def _data(seed: int = 0, n: int = 600):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = y + rng.normal(0, 0.7, n)
    worse = y + rng.normal(0, 1.5, n)
    return y, good, worse, np.arange(n) // 2


def test_changes_equal_sklearn_differences_and_the_ci_is_paired():
    y, good, worse, pid = _data()
    changes = paired_metric_changes(y, good, {"same": good.copy(), "worse": worse}, pid, threshold=0.5, n_resamples=300, seed=1)
    same = changes["same"]["auroc"]
    assert (same.change, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)  # identical scores: every resample agrees
    worse_auroc = changes["worse"]["auroc"]
    assert worse_auroc.value == pytest.approx(roc_auc_score(y, worse), abs=1e-12)
    assert worse_auroc.change == pytest.approx(roc_auc_score(y, worse) - roc_auc_score(y, good), abs=1e-12)
    assert worse_auroc.ci_low <= worse_auroc.change <= worse_auroc.ci_high < 0


def test_reproducible_with_the_seed():
    y, good, worse, pid = _data(3)
    first = paired_metric_changes(y, good, {"w": worse}, pid, threshold=0.5, n_resamples=100, seed=7)
    second = paired_metric_changes(y, good, {"w": worse}, pid, threshold=0.5, n_resamples=100, seed=7)
    assert first["w"]["auroc"] == second["w"]["auroc"]
