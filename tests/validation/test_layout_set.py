"""The bootstrap's fast path (``LayoutSet``: column sums by one sparse product, every layout of a
report at once) against a direct computation of each layout alone, and the seeded draws kept
between labels (``seeded_bootstrap_chunks``).

The reference expands every resample to case weights and computes each metric from its
definition: AUROC over every positive-negative pair (ties one half), average precision with
scikit-learn, the confusion matrix by plain sums. No database.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from radtrust_engine import metrics
from radtrust_engine.metrics import (
    METRIC_NAMES,
    LayoutSet,
    ScoreLayout,
    patient_bootstrap_counts,
    seeded_bootstrap_chunks,
)


def _direct(y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float) -> dict[str, float]:
    """One weight vector's metrics from their definitions (NaN where undefined)."""
    pos, neg = y.astype(bool), ~y.astype(bool)
    n_pos, n_neg = w[pos].sum(), w[neg].sum()
    above = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
    pairs = n_pos * n_neg
    called = s >= threshold
    tp, fp = w[pos & called].sum(), w[neg & called].sum()
    fn, tn = n_pos - tp, n_neg - fp

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else np.nan

    return {
        "auroc": ratio(w[pos] @ above @ w[neg], pairs),
        "auprc": average_precision_score(y, s, sample_weight=w) if n_pos > 0 else np.nan,
        "sensitivity": ratio(tp, n_pos),
        "specificity": ratio(tn, n_neg),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "fnr": ratio(fn, n_pos),
        "fpr": ratio(fp, n_neg),
    }


def _cohort(seed: int, n: int = 150, n_patients: int = 70):
    """Cases of patients with 1-4 cases each, scores rounded so that ties are many (within and across classes)."""
    rng = np.random.default_rng(seed)
    patient = rng.integers(0, n_patients, n)
    y = (rng.random(n) < 0.35).astype(int)
    s = np.round(rng.random(n) * 0.7 + 0.25 * y, 1)
    return y, s, patient, rng


def _layout(s: np.ndarray, y: np.ndarray, at: np.ndarray, threshold: float) -> ScoreLayout:
    order = at[np.argsort(s[at], kind="stable")]
    return ScoreLayout.build(order, s[order], y[order].astype(bool), threshold)


@pytest.mark.parametrize("seed", range(4))
def test_every_layout_of_a_set_equals_its_direct_computation_on_every_resample(seed):
    y, s, patient, rng = _cohort(seed)
    n_patients = int(patient.max()) + 1
    subsets = [
        np.arange(y.size),  # everything
        np.flatnonzero(patient % 3 == 0),  # a subgroup
        np.flatnonzero(y == 0)[:20],  # negatives only: AUROC, AUPRC and the positive rates undefined
        np.flatnonzero(y == 1)[:15],  # positives only
        np.flatnonzero(s >= 0.6),  # all called positive
    ]
    thresholds = [0.5, 0.45, 0.3, 0.6, 0.6]
    layouts = [_layout(s, y, at, t) for at, t in zip(subsets, thresholds)]
    together = LayoutSet.of(layouts, [patient[lay.positions] for lay in layouts], n_patients)
    counts = np.vstack([np.ones(n_patients), patient_bootstrap_counts(rng, n_patients, 30)])
    got = together.metrics(counts)
    assert list(got) == list(METRIC_NAMES)
    for i, (lay, threshold) in enumerate(zip(layouts, thresholds)):
        for row in range(counts.shape[0]):
            w = counts[row, patient[lay.positions]]
            expected = _direct(y[lay.positions], s[lay.positions], w, threshold)
            for name in METRIC_NAMES:
                np.testing.assert_allclose(got[name][row, i], expected[name], rtol=0, atol=1e-12, err_msg=f"{name} layout {i} row {row}")


def test_a_set_gives_each_layout_its_own_results_to_the_bit_but_average_precision_to_rounding():
    """Integer weights make every sum exact: AUROC and the confusion-matrix metrics do not depend on
    the other layouts of the set, nor on how many rows are computed at once."""
    y, s, patient, rng = _cohort(11, n=400, n_patients=150)
    layouts = [_layout(s, y, np.flatnonzero(patient % k != 0), 0.5) for k in (2, 3, 5, 7)]
    units = [patient[lay.positions] for lay in layouts]
    counts = patient_bootstrap_counts(rng, 150, 40)
    together = LayoutSet.of(layouts, units, 150).metrics(counts)
    for i, (lay, unit) in enumerate(zip(layouts, units)):
        alone = lay.metrics_from(counts, unit)
        by_rows = np.vstack([lay.metrics_from(counts[r : r + 1], unit)["auroc"] for r in range(counts.shape[0])]).ravel()
        np.testing.assert_array_equal(by_rows, alone["auroc"])
        for name in METRIC_NAMES:
            if name == "auprc":
                np.testing.assert_allclose(together[name][:, i], alone[name], rtol=0, atol=1e-12)
            else:
                np.testing.assert_array_equal(together[name][:, i], alone[name], err_msg=name)


def test_many_rows_are_computed_in_passes_with_the_same_results(monkeypatch):
    y, s, patient, rng = _cohort(5)
    lay = _layout(s, y, np.arange(y.size), 0.5)
    together = LayoutSet.of([lay], [patient[lay.positions]], 70)
    counts = patient_bootstrap_counts(rng, 70, 25)
    whole = together.metrics(counts)
    monkeypatch.setattr(metrics, "SUM_CELLS", 3 * together.summing.shape[0])  # passes of 3 rows
    for name, values in together.metrics(counts).items():
        np.testing.assert_array_equal(values, whole[name])


def test_seeded_draws_are_kept_between_calls_and_equal_fresh_ones_whatever_the_chunks(monkeypatch):
    monkeypatch.setattr(metrics, "_kept_draws", type(metrics._kept_draws)())
    fresh = patient_bootstrap_counts(np.random.default_rng(4), 30, 50)
    first = np.vstack(list(seeded_bootstrap_chunks(4, 30, 50, 16)))
    assert (4, 30, 50) in metrics._kept_draws
    again = np.vstack(list(seeded_bootstrap_chunks(4, 30, 50, 7)))  # from the kept counts
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)
    assert again.dtype == np.float64


def test_unseeded_draws_are_not_kept_and_the_kept_ones_stay_within_their_limit(monkeypatch):
    monkeypatch.setattr(metrics, "_kept_draws", type(metrics._kept_draws)())
    monkeypatch.setattr(metrics, "KEPT_DRAW_CELLS", 2 * 30 * 50)
    a, b = (np.vstack(list(seeded_bootstrap_chunks(None, 30, 50, 64))) for _ in range(2))
    assert not metrics._kept_draws and not np.array_equal(a, b)
    for seed in range(3):
        list(seeded_bootstrap_chunks(seed, 30, 50, 64))
    assert list(metrics._kept_draws) == [(1, 30, 50), (2, 30, 50)]  # the oldest went first
    list(seeded_bootstrap_chunks(9, 30, 200, 64))  # larger than the limit: drawn, never kept
    assert (9, 30, 200) not in metrics._kept_draws
