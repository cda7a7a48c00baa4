"""A run against its baseline: metric deltas with a bootstrap over both runs' patients, drift
findings for a shifted site and none for an unshifted one, the run's tests as one Holm-adjusted
family (checked against statsmodels, and by simulation of clustered runs with and without a
change), and the case table's file format."""

from __future__ import annotations

import io

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from radtrust_engine.baseline import BaselineError, CaseTable, baseline_comparison, metric_deltas, pseudonymise
from radtrust_engine.metrics import binary_metrics
from radtrust_engine.stats import holm_adjust


def _table(
    rng: np.random.Generator, n: int, *, separation: float = 2.0, offset: float = 0.0, prevalence: float = 0.3, patients: list[str] | None = None
) -> CaseTable:
    y = (rng.random(n) < prevalence).astype(np.int8)
    logit = rng.normal(0, 1, n) + separation * (y - 0.5)
    scores = 1 / (1 + np.exp(-logit))
    ids = patients if patients is not None else [f"p{rng.integers(1_000_000)}-{i}" for i in range(n)]
    brightness = rng.normal(100 + offset, 10, n)
    return CaseTable(
        patient_keys=pseudonymise(ids),
        label_names=("nodule",),
        labels=y[:, None],
        class_names=("nodule",),
        scores=scores[:, None],
        image_stats={"image_mean": brightness, "image_std": rng.normal(20, 2, n), "image_p01": brightness - 40, "image_p99": brightness + 40},
    )


def test_identical_runs_have_zero_deltas_and_no_findings():
    table = _table(np.random.default_rng(0), 600)
    report = baseline_comparison(table, table, thresholds={"nodule": 0.5}, n_resamples=200, seed=0)
    for delta in report["performance"]["nodule"]["metrics"]:
        assert delta["delta"] == 0 and delta["ci_low"] == 0 and delta["ci_high"] == 0 and not delta["degraded"]
    assert report["findings"] == [] and report["n_shared_patients"] == 600


def test_point_deltas_match_metrics_computed_separately():
    rng = np.random.default_rng(1)
    reference, current = _table(rng, 500), _table(rng, 400, separation=1.0)
    deltas = {
        d.metric: d
        for d in metric_deltas(
            reference.labels[:, 0],
            reference.scores[:, 0],
            reference.patient_keys,
            current.labels[:, 0],
            current.scores[:, 0],
            current.patient_keys,
            threshold=0.5,
            n_resamples=300,
            seed=0,
        )
    }
    before = binary_metrics(reference.labels[:, 0], reference.scores[:, 0], 0.5)
    after = binary_metrics(current.labels[:, 0], current.scores[:, 0], 0.5)
    assert deltas["auroc"].baseline == pytest.approx(before.auroc) and deltas["auroc"].current == pytest.approx(after.auroc)
    assert deltas["sensitivity"].delta == pytest.approx(after.sensitivity - before.sensitivity)
    assert deltas["auroc"].ci_low < deltas["auroc"].delta < deltas["auroc"].ci_high


def test_a_degraded_model_is_found_and_a_same_quality_one_is_not():
    rng = np.random.default_rng(2)
    reference = _table(rng, 1500)
    worse = baseline_comparison(reference, _table(rng, 1500, separation=0.8), thresholds={}, n_resamples=300, seed=0)
    auroc = next(d for d in worse["performance"]["nodule"]["metrics"] if d["metric"] == "auroc")
    assert auroc["degraded"] and auroc["delta"] < -0.1 and auroc["ci_high"] < 0 and auroc["p_value"] < 0.01
    assert auroc["test"]["p_value"] == auroc["p_drop"] <= auroc["test"]["p_adjusted"] <= 0.05 and auroc["test"]["alternative"] == "drop"
    finding = next(f for f in worse["findings"] if f["kind"] == "performance_degradation" and f["subject"] == "nodule:auroc")
    assert finding["severity"] == "critical" and "fell from" in finding["message"]
    assert finding["evidence"]["test"] == auroc["test"] and finding["evidence"]["test"]["family_size"] == 9

    same = baseline_comparison(reference, _table(rng, 1500), thresholds={}, n_resamples=300, seed=0)
    assert not any(f["kind"] == "performance_degradation" for f in same["findings"])
    auroc = next(d for d in same["performance"]["nodule"]["metrics"] if d["metric"] == "auroc")
    assert auroc["ci_low"] < 0 < auroc["ci_high"]


def test_a_shifted_site_drifts_on_image_statistics_and_an_unshifted_one_does_not():
    rng = np.random.default_rng(3)
    reference = _table(rng, 1000)
    shifted = baseline_comparison(reference, _table(rng, 800, offset=15), thresholds={}, n_resamples=100, seed=0)
    kinds = {(f["kind"], f["subject"]) for f in shifted["findings"]}
    assert ("input_drift", "image_mean") in kinds and ("input_drift", "image_p99") in kinds
    assert shifted["inputs"]["image_mean"]["level"] == "major"
    assert set(shifted["histograms"]) >= {"image_mean", "score_nodule"}
    histogram = shifted["histograms"]["image_mean"]
    assert len(histogram["edges"]) == len(histogram["reference"]) + 1 and histogram["drifted"]

    unshifted = baseline_comparison(reference, _table(rng, 800), thresholds={}, n_resamples=100, seed=0)
    assert not [f for f in unshifted["findings"] if f["kind"] in {"input_drift", "output_drift"}]


def test_prevalence_shift_is_reported():
    rng = np.random.default_rng(4)
    report = baseline_comparison(_table(rng, 1000, prevalence=0.2), _table(rng, 1000, prevalence=0.4), thresholds={}, n_resamples=100, seed=0)
    assert report["prevalence"]["nodule"]["significant"] and report["prevalence"]["nodule"]["test"]["rejected"]
    assert any(f["kind"] == "prevalence_shift" and f["severity"] == "info" for f in report["findings"])


def test_holm_adjust_matches_statsmodels():
    rng = np.random.default_rng(12)
    for p_values in ([0.01, 0.04, 0.03, 0.005], [0.5], [], list(rng.random(9) ** 3), [0.02, 0.02, 0.02]):
        expected = multipletests(p_values, method="holm")[1] if p_values else []
        assert holm_adjust(p_values) == pytest.approx(list(expected), rel=1e-12)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_every_test_of_a_run_is_one_adjusted_family():
    """Per label three metric drops and the prevalence, per score and image statistic a KS test: nine
    tests here, each with its raw p-value and the family's Holm adjustment of all nine."""
    rng = np.random.default_rng(13)
    report = baseline_comparison(_table(rng, 400), _table(rng, 400, separation=1.6, offset=2), thresholds={}, n_resamples=200, seed=0)
    tests = [m["test"] for m in report["performance"]["nodule"]["metrics"]] + [report["prevalence"]["nodule"]["test"]]
    tests += [section[f]["test"] for section in (report["outputs"], report["inputs"]) for f in section]
    assert len(tests) == 9 == report["thresholds"]["family_size"] and report["thresholds"]["multiplicity"] == "holm"
    assert all(t["family_size"] == 9 and t["method"] == "holm" and t["alpha"] == 0.05 for t in tests)
    assert [t["p_adjusted"] for t in tests] == pytest.approx(list(multipletests([t["p_value"] for t in tests], method="holm")[1]), rel=1e-12)
    for finding in report["findings"]:  # an alert needs the adjusted test
        assert finding["evidence"]["test"]["p_adjusted"] <= 0.05 and finding["evidence"]["test"]["rejected"]
    for section in (report["outputs"], report["inputs"]):
        for result in section.values():
            assert result["ks_pvalue"] == result["test"]["p_value"] and result["ks_pvalue_adjusted"] == result["test"]["p_adjusted"]
            assert result["drifted"] == (
                result["test"]["rejected"] and result["ks_statistic"] >= 0.1 or result["test"]["rejected"] and result["psi"] >= 0.1
            )


def _clustered_table(rng: np.random.Generator, n_patients: int, prefix: str, *, separation: float = 2.0, shift: float = 0.0) -> CaseTable:
    """Patients with 1-4 images sharing a patient effect in the score and every image statistic
    (intra-class correlation 0.64 for the score, 0.8 for the statistics); ``shift`` moves the
    image mean by that many patient standard deviations."""
    positive = rng.random(n_patients) < 0.3
    latent = -1 + separation * positive + 0.8 * rng.standard_normal(n_patients)
    patient = np.repeat(np.arange(n_patients), rng.integers(1, 5, n_patients))
    scores = 1 / (1 + np.exp(-(latent[patient] + 0.6 * rng.standard_normal(patient.size))))
    stats = {
        name: centre
        + (shift * 120 if name == "image_mean" else 0)
        + 120 * rng.standard_normal(n_patients)[patient]
        + 60 * rng.standard_normal(patient.size)
        for name, centre in (("image_mean", 1800), ("image_std", 600), ("image_p01", 150), ("image_p99", 3700))
    }
    return CaseTable(
        patient_keys=pseudonymise([f"{prefix}{p}" for p in patient]),
        label_names=("nodule",),
        labels=positive[patient].astype(np.int8)[:, None],
        class_names=("nodule",),
        scores=scores[:, None],
        image_stats=stats,
    )


def test_runs_with_nothing_changed_rarely_raise_an_alert():
    """Forty follow-ups of 80 new patients from the unchanged process: the family-wise control
    allows an alert in at most 5% of them (2 expected; 6 or more has probability 0.01 at 5%),
    where the image-level tests before it alarmed in 61-83% of such runs (none or one here has
    probability below 1e-13 at 60%)."""
    alarmed = 0
    for r in range(40):
        rng = np.random.default_rng([14, r])
        report = baseline_comparison(_clustered_table(rng, 80, "B"), _clustered_table(rng, 80, "F"), thresholds={}, n_resamples=100, seed=r)
        alarmed += bool(report["findings"])
    assert alarmed <= 5


def test_a_planted_drift_and_a_planted_degradation_are_found():
    """Ten follow-ups each of 200 patients: the image mean moved by 0.6 patient standard deviations,
    or the model's AUROC fell from 0.92 to 0.80; the right alert is raised in at least 8 of 10
    (power about 0.99 and 0.97 in docs/methods.md)."""
    drifted = degraded = 0
    for r in range(10):
        rng = np.random.default_rng([15, r])
        baseline = _clustered_table(rng, 200, "B")
        moved = baseline_comparison(baseline, _clustered_table(rng, 200, "F", shift=0.6), thresholds={}, n_resamples=100, seed=r)
        worse = baseline_comparison(baseline, _clustered_table(rng, 200, "G", separation=1.2), thresholds={}, n_resamples=100, seed=r)
        drifted += any(f["kind"] == "input_drift" and f["subject"] == "image_mean" for f in moved["findings"])
        degraded += any(f["kind"] == "performance_degradation" and f["subject"] == "nodule:auroc" for f in worse["findings"])
    assert drifted >= 8 and degraded >= 8


def test_shared_patients_are_paired():
    """The same patients with slightly changed scores: pairing makes the interval far narrower
    than for two independent samples of the same sizes."""
    rng = np.random.default_rng(5)
    ids = [f"p{i}" for i in range(600)]
    reference = _table(rng, 600, patients=ids)
    current = CaseTable(
        patient_keys=reference.patient_keys,
        label_names=reference.label_names,
        labels=reference.labels,
        class_names=reference.class_names,
        scores=np.clip(reference.scores + rng.normal(0, 0.01, reference.scores.shape), 0, 1),
    )
    independent = _table(rng, 600)
    paired = metric_deltas(
        reference.labels[:, 0],
        reference.scores[:, 0],
        reference.patient_keys,
        current.labels[:, 0],
        current.scores[:, 0],
        current.patient_keys,
        threshold=0.5,
        n_resamples=300,
        seed=0,
    )[0]
    unpaired = metric_deltas(
        reference.labels[:, 0],
        reference.scores[:, 0],
        reference.patient_keys,
        independent.labels[:, 0],
        independent.scores[:, 0],
        independent.patient_keys,
        threshold=0.5,
        n_resamples=300,
        seed=0,
    )[0]
    assert (paired.ci_high - paired.ci_low) * 5 < unpaired.ci_high - unpaired.ci_low


def test_runs_of_other_labels_are_refused_with_the_reason():
    rng = np.random.default_rng(6)
    table = _table(rng, 100)
    other = CaseTable(
        patient_keys=table.patient_keys,
        label_names=("effusion",),
        labels=table.labels,
        class_names=("effusion",),
        scores=table.scores,
    )
    with pytest.raises(BaselineError, match="cannot be compared"):
        baseline_comparison(table, other, thresholds={}, n_resamples=10, seed=0)


def test_case_table_round_trip_and_refusals():
    table = _table(np.random.default_rng(7), 50)
    back = CaseTable.from_file(io.BytesIO(table.to_bytes()))
    assert back.label_names == ("nodule",) and back.class_names == ("nodule",)
    np.testing.assert_array_equal(back.patient_keys, table.patient_keys)
    np.testing.assert_array_equal(back.scores, table.scores)
    np.testing.assert_array_equal(back.image_stats["image_mean"], table.image_stats["image_mean"])
    with pytest.raises(BaselineError, match="cannot be read"):
        CaseTable.from_file(io.BytesIO(b"not a numpy file"))
    buffer = io.BytesIO()
    np.savez(buffer, format=np.asarray("1"), patient_keys=np.array([object()], dtype=object))
    buffer.seek(0)
    with pytest.raises(BaselineError, match="cannot be read"):  # an object array would need pickle: refused
        CaseTable.from_file(buffer)


def test_pseudonymised_keys_are_stable_and_hide_the_id():
    keys = pseudonymise(["patient-001", "patient-001", "patient-002"])
    assert keys[0] == keys[1] != keys[2] and "patient" not in keys[0] and len(keys[0]) == 16
