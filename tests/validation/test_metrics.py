"""Metrics engine: point metrics against scikit-learn, weighted metrics,
patient-level bootstrap, stratification, suppression and fairness gaps.

No database: the engine is plain Python and NumPy.
"""

import json
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from radtrust_engine.metrics import (
    CHUNK_CELLS,
    METRIC_NAMES,
    ScoreLayout,
    auroc,
    average_precision,
    binary_metrics,
    chunk_for,
    patient_bootstrap_counts,
)
from radtrust_engine.stratification import age_band, stratified_metrics

TOL = 1e-9


def _tied_data(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Rounded scores: many ties, within and across classes.
    s = np.round(rng.random(n) * 0.8 + 0.3 * y, 1)
    return y, s, rng


def _reference(y, s, threshold, w=None):
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1], sample_weight=w).ravel()
    return {
        "auroc": roc_auc_score(y, s, sample_weight=w),
        "auprc": average_precision_score(y, s, sample_weight=w),
        "sensitivity": recall_score(y, pred, sample_weight=w),
        "specificity": recall_score(1 - y, 1 - pred, sample_weight=w),
        "ppv": precision_score(y, pred, sample_weight=w),
        "npv": precision_score(1 - y, 1 - pred, sample_weight=w),
        "f1": f1_score(y, pred, sample_weight=w),
        "fnr": fn / (fn + tp),
        "fpr": fp / (fp + tn),
    }


@pytest.mark.parametrize("seed", range(6))
def test_point_metrics_match_sklearn_with_ties(seed):
    y, s, _ = _tied_data(seed)
    for threshold in (0.3, 0.5, 0.71):
        got = binary_metrics(y, s, threshold).to_dict()
        for name, expected in _reference(y, s, threshold).items():
            assert abs(got[name] - expected) <= TOL, (name, threshold)


@pytest.mark.parametrize("seed", range(4))
def test_continuous_scores_match_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, 1000)
    s = rng.normal(size=1000) + y
    assert abs(auroc(y, s) - roc_auc_score(y, s)) <= TOL
    assert abs(average_precision(y, s) - average_precision_score(y, s)) <= TOL


@pytest.mark.parametrize("seed", range(4))
def test_weighted_metrics_match_sklearn_sample_weight(seed):
    y, s, rng = _tied_data(seed)
    w = rng.integers(0, 4, y.size)
    got = binary_metrics(y, s, 0.5, sample_weight=w).to_dict()
    for name, expected in _reference(y, s, 0.5, w).items():
        assert abs(got[name] - expected) <= TOL, name


@pytest.mark.parametrize("seed", range(4))
def test_integer_weights_equal_metrics_of_repeated_data(seed):
    y, s, rng = _tied_data(seed, 300)
    w = rng.integers(0, 4, y.size)
    weighted = binary_metrics(y, s, 0.5, sample_weight=w).to_dict()
    expanded = binary_metrics(np.repeat(y, w), np.repeat(s, w), 0.5).to_dict()
    for name in METRIC_NAMES:
        assert abs(weighted[name] - expanded[name]) <= TOL, name


@pytest.mark.parametrize("names", [("auroc",), ("auroc", "sensitivity", "specificity"), ("auprc", "fpr"), ()])
def test_a_subset_of_metrics_is_bit_for_bit_what_every_metric_gives(names):
    """Robustness reads three metrics on 34 layouts per resample and label: it asks for those alone."""
    y, s, rng = _tied_data(7, 300)
    order = np.argsort(s, kind="stable")
    layout = ScoreLayout.build(order, s[order], y[order].astype(bool), 0.5)
    weights = rng.poisson(1.0, (40, y.size)).astype(np.float64)[:, order]
    every, some = layout.metrics(weights), layout.metrics(weights, names)
    assert list(some) == list(names)
    for name in names:
        np.testing.assert_array_equal(some[name], every[name])


def test_undefined_values_are_none():
    s = np.array([0.1, 0.4, 0.6, 0.9])
    only_neg = binary_metrics([0, 0, 0, 0], s, 0.5)
    assert only_neg.auroc is None and only_neg.auprc is None
    assert only_neg.sensitivity is None and only_neg.fnr is None
    assert only_neg.specificity == 0.5 and only_neg.f1 == 0.0  # false positives: F1 is 0
    assert binary_metrics([0, 0, 0, 0], s, 2.0).f1 is None  # 0/0: nothing to score
    only_pos = binary_metrics([1, 1, 1, 1], s, 0.5)
    assert only_pos.auroc is None and only_pos.specificity is None and only_pos.fpr is None
    assert only_pos.auprc == 1.0

    y = [0, 1, 0, 1]
    nothing_called = binary_metrics(y, s, 2.0)
    assert nothing_called.ppv is None and nothing_called.sensitivity == 0.0
    everything_called = binary_metrics(y, s, -1.0)
    assert everything_called.npv is None and everything_called.sensitivity == 1.0
    assert auroc([1], [0.3]) is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="only 0 and 1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="y_score"):
        binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="intersection"):
        stratified_metrics([0, 1], [0.1, 0.2], [1, 2], {"sex": ["F", "M"]}, [("sex", "site")])


def test_age_band_labels():
    got = age_band([None, float("nan"), 5, 18, 39.5, 40, 64, 65, 90, "n/a"])
    assert list(got) == ["unknown", "unknown", "<18", "18-39", "18-39", "40-64", "40-64", "65+", "65+", "unknown"]
    assert list(age_band([10, 50], edges=(30,))) == ["<30", "30+"]


def _cohort(seed: int, n_patients: int = 400, cases_per_patient: int = 2):
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), cases_per_patient)
    n = pid.size
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 1.5 * y
    sex = np.array(["F", "M"])[rng.integers(0, 2, n_patients)][pid]
    site = np.array(["A", "B", "C"])[rng.integers(0, 3, n_patients)][pid]
    return y, s, pid, {"sex": sex, "site": site}


def test_bootstrap_is_reproducible_with_a_seed_and_chunk_size_free():
    y, s, pid, attrs = _cohort(1)
    kw = {"threshold": 0.5, "n_resamples": 100, "intersections": [("sex", "site")]}
    a = stratified_metrics(y, s, pid, attrs, seed=7, chunk_size=64, **kw).to_dict()
    b = stratified_metrics(y, s, pid, attrs, seed=7, chunk_size=13, **kw).to_dict()
    c = stratified_metrics(y, s, pid, attrs, seed=8, **kw).to_dict()
    assert a == b
    assert a["overall"]["metrics"]["auroc"] != c["overall"]["metrics"]["auroc"]
    json.dumps(a)  # the report is plain JSON


def test_chunks_shrink_with_the_dataset_so_memory_does_not_grow_with_it():
    """Chunks of 64 resamples over 100,000 cases grew a run's memory by about 500 MB; the weights
    of one chunk now stay within ``CHUNK_CELLS`` (the results do not depend on the chunk size, above)."""
    assert chunk_for(2_000) == 64
    assert chunk_for(100_000) * 100_000 <= CHUNK_CELLS < (chunk_for(100_000) + 1) * 100_000
    assert chunk_for(10_000_000) == 1 and chunk_for(0) == 64


def test_bootstrap_weights_are_multinomial_patient_counts():
    counts = patient_bootstrap_counts(np.random.default_rng(0), 50, 200)
    assert counts.shape == (200, 50)
    assert np.all(counts.sum(axis=1) == 50)
    assert abs(counts.mean() - 1.0) < 1e-12 and 0.8 < counts.var() < 1.2  # ~ 1 - 1/50


def test_bootstrap_moves_a_patients_cases_together():
    # Duplicating every case within its patient leaves every resample's
    # metrics unchanged when patients are resampled, so the CIs are identical.
    y, s, pid, attrs = _cohort(2, n_patients=300, cases_per_patient=1)
    dup = lambda a: np.repeat(a, 2)  # noqa: E731
    kw = {"threshold": 0.5, "n_resamples": 200, "seed": 3}
    once = stratified_metrics(y, s, pid, attrs, **kw)
    twice = stratified_metrics(dup(y), dup(s), dup(pid), {k: dup(v) for k, v in attrs.items()}, **kw)
    for name in METRIC_NAMES:
        a, b = once.overall.metrics[name], twice.overall.metrics[name]
        assert a.value == pytest.approx(b.value, abs=1e-12)
        assert a.ci_low == pytest.approx(b.ci_low, abs=1e-12)
        assert a.ci_high == pytest.approx(b.ci_high, abs=1e-12)
    assert twice.overall.n_cases == 600 and twice.overall.n_patients == 300

    # Resampling the duplicated cases independently would understate the width.
    naive = stratified_metrics(dup(y), dup(s), np.arange(600), **kw).overall.metrics["auroc"]
    width = lambda m: m.ci_high - m.ci_low  # noqa: E731
    assert width(naive) < 0.85 * width(twice.overall.metrics["auroc"])


def test_subgroup_point_estimates_match_sklearn():
    y, s, pid, attrs = _cohort(4)
    report = stratified_metrics(y, s, pid, attrs, [("sex", "site")], n_resamples=20)
    mask = (attrs["sex"] == "F") & (attrs["site"] == "B")
    group = report.subgroup(("sex", "site"), ("F", "B"))
    assert group.n_cases == mask.sum()
    assert abs(group.metrics["auroc"].value - roc_auc_score(y[mask], s[mask])) <= TOL
    assert abs(group.metrics["auprc"].value - average_precision_score(y[mask], s[mask])) <= TOL
    m = group.metrics["auroc"]
    assert m.ci_low <= m.value <= m.ci_high and m.n_valid == 20
    assert len([g for g in report.subgroups if g.attributes == ("sex", "site")]) == 6


def test_small_subgroups_are_listed_as_suppressed():
    y, s, pid, attrs = _cohort(5, n_patients=300)
    site = attrs["site"].astype(object)
    site[pid < 6] = "tiny"  # six patients, twelve cases
    site[pid == 299] = None  # one patient with no site
    report = stratified_metrics(y, s, pid, {"site": site}, n_resamples=50, min_patients=10)
    tiny = report.subgroup(("site",), ("tiny",))
    unknown = report.subgroup(("site",), ("unknown",))  # missing values, listed too
    for small in (tiny, unknown):  # listed with why, without a count a reader could use
        assert small.suppressed and small.reason == "too_few_patients"
        assert small.metrics is None and small.n_patients is small.n_cases is small.n_positive is None
    # Together they hold 7 patients, which overall minus the three sites would give: the
    # smallest site is withheld as well.
    sizes = {v: np.unique(pid[site == v]).size for v in ("A", "B", "C")}
    withheld = report.subgroup(("site",), (min(sizes, key=sizes.get),))
    assert withheld.suppressed and withheld.reason == "complementary" and withheld.n_patients is None
    shown = [g for g in report.subgroups if not g.suppressed]
    assert len(shown) == 2 and all(g.n_patients == sizes[g.values[0]] for g in shown)
    gap = report.gap("auroc_gap", ("site",))
    assert gap.n_groups_compared == 2 and {gap.group_high, gap.group_low} <= {g.values for g in shown}


def test_planted_subgroup_effect_is_the_largest_auroc_gap():
    rng = np.random.default_rng(11)
    n_patients = 1500
    pid = np.repeat(np.arange(n_patients), 2)
    n = pid.size
    sex = np.array(["F", "M"])[rng.integers(0, 2, n_patients)][pid]
    site = np.array(["A", "B", "C", "D"])[rng.integers(0, 4, n_patients)][pid]
    y = rng.integers(0, 2, n)
    signal = np.where(site == "C", 0.6, 2.0)  # the model is much less informative at site C
    s = rng.normal(size=n) + signal * y
    report = stratified_metrics(y, s, pid, {"sex": sex, "site": site}, [("sex", "site")], threshold=1.0, n_resamples=300, seed=0)
    gap = report.gap("auroc_gap", ("site",))
    assert gap.group_low == ("C",)
    assert gap.value > 0.15
    assert 0 < gap.ci_low <= gap.value <= gap.ci_high
    # Underdiagnosis: more false negatives at site C.
    fnr = report.gap("fnr_gap", ("site",))
    assert fnr.group_high == ("C",) and fnr.ci_low > 0
    # No planted effect by sex: its gap's interval reaches down to 0 (no pair differs).
    by_sex = report.gap("auroc_gap", ("sex",))
    assert by_sex.ci_low == 0 < by_sex.ci_high and not by_sex.significant
    inter = report.gap("auroc_gap", ("sex", "site"))
    assert inter.group_low[1] == "C"


def test_equalized_odds_difference_is_the_larger_of_tpr_and_fpr_gaps():
    y, s, pid, attrs = _cohort(6)
    report = stratified_metrics(y, s, pid, attrs, threshold=0.7, n_resamples=100)
    groups = [g for g in report.subgroups if g.attributes == ("site",)]
    tpr = [g.metrics["sensitivity"].value for g in groups]
    fpr = [g.metrics["fpr"].value for g in groups]
    eod = report.gap("equalized_odds_difference", ("site",))
    expected = max(max(tpr) - min(tpr), max(fpr) - min(fpr))
    assert eod.value == pytest.approx(expected, abs=1e-12)
    assert eod.component in {"sensitivity", "fpr"}
    values = tpr if eod.component == "sensitivity" else fpr
    by_name = {g.values: g.metrics[eod.component].value for g in groups}
    assert by_name[eod.group_high] == max(values) and by_name[eod.group_low] == min(values)
    assert eod.ci_low <= eod.value <= eod.ci_high
    assert set(eod.components) == {"sensitivity", "fpr"}


def test_percentile_ci_covers_the_true_auroc_about_95_percent_of_the_time():
    # Negatives ~ N(0, 1), positives ~ N(d, 1): true AUROC = Phi(d / sqrt 2).
    d = 1.0
    truth = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(2024)
    covered = 0
    n_datasets = 200
    for i in range(n_datasets):
        y = (rng.random(200) < 0.4).astype(int)
        s = rng.normal(size=200) + d * y
        m = stratified_metrics(y, s, np.arange(200), n_resamples=200, seed=i).overall
        covered += m.metrics["auroc"].ci_low <= truth <= m.metrics["auroc"].ci_high
    assert 0.90 <= covered / n_datasets <= 0.99
