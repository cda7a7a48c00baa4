"""A run against its baseline: metric deltas with a bootstrap over both runs' patients, drift
findings for a shifted site and none for an unshifted one, and the case table's file format."""

from __future__ import annotations

import io

import numpy as np
import pytest

from radtrust_engine.baseline import BaselineError, CaseTable, baseline_comparison, metric_deltas, pseudonymise
from radtrust_engine.metrics import binary_metrics


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
    finding = next(f for f in worse["findings"] if f["kind"] == "performance_degradation" and f["subject"] == "nodule:auroc")
    assert finding["severity"] == "critical" and "fell from" in finding["message"]

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
    assert report["prevalence"]["nodule"]["significant"]
    assert any(f["kind"] == "prevalence_shift" and f["severity"] == "info" for f in report["findings"])


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
