"""Drift of a detection run against its baseline run, checked against planted truth: no shift
planted, no alert (over many draws); a planted score shift, a planted loss of sensitivity and a
planted input shift each found, with the classification tests, rules and Holm family."""

import io

import numpy as np
import pytest

from radtrust_engine.baseline import BaselineError, CaseTable, baseline_comparison
from radtrust_engine.detection import MatchedCase, froc
from radtrust_engine.detection_drift import detection_case_table, detection_comparison
from radtrust_engine.drift import IMAGE_FEATURES

SETTINGS = {"n_resamples": 300, "seed": 0}


def draw_run(seed: int, *, n_patients: int = 60, found: float = 0.85, fp_rate: float = 2.0, fp_shift: float = 0.0, mean_shift: float = 0.0):
    """A detection run's matched cases and image statistics: 1-2 images per patient, 0-2 lesions
    each, a lesion found with probability ``found``, Poisson false positives with scores raised by ``fp_shift``."""
    rng = np.random.default_rng(seed)
    cases, stats = [], []
    for p in range(n_patients):
        for image in range(int(rng.integers(1, 3))):
            n_lesions = int(rng.integers(0, 3))
            hits = np.flatnonzero(rng.random(n_lesions) < found)
            n_fp = int(rng.poisson(fp_rate))
            scores = np.r_[rng.uniform(0.5, 1.0, hits.size), np.clip(rng.uniform(0.0, 0.7, n_fp) + fp_shift, 0, 1)]
            lesion_of = np.r_[hits, np.full(n_fp, -1)].astype(np.int64)
            cases.append(
                MatchedCase(
                    f"s{seed}-p{p}-i{image}",
                    f"s{seed}-p{p}",
                    scores,
                    lesion_of,
                    n_lesions,
                    rng.uniform(3, 20, n_lesions),
                    labels=np.zeros(scores.size, dtype=np.int64),
                    lesion_labels=np.zeros(n_lesions, dtype=np.int64),
                )
            )
            stats.append(rng.normal([mean_shift, 1.0, -2.0, 2.0], 0.1))
    table = np.asarray(stats)
    return cases, {name: table[:, j] for j, name in enumerate(IMAGE_FEATURES)}


def table_of(seed: int, **shift) -> tuple[list[MatchedCase], CaseTable]:
    cases, stats = draw_run(seed, **shift)
    return cases, detection_case_table(cases, ["nodule"], stats)


def test_no_planted_shift_raises_no_alert_in_nearly_every_draw():
    alerting = 0
    for seed in range(20):
        _, reference = table_of(1000 + seed)
        _, current = table_of(2000 + seed)
        comparison = detection_comparison(reference, current, **SETTINGS)
        alerting += bool(comparison["findings"])
    # the family's error rate is held at 0.05: about one draw in twenty may alert
    assert alerting <= 2, alerting
    assert set(comparison["outputs"]) == {"max_score_nodule", "candidates_per_image", "candidate_score"}
    assert set(comparison["inputs"]) == set(IMAGE_FEATURES)
    family = comparison["thresholds"]["family_size"]
    assert family == 1 + 1 + 3 + len(IMAGE_FEATURES)  # CPM, prevalence, three score features, four image statistics
    assert comparison["outputs"]["candidate_score"]["test"]["family_size"] == family


def test_a_planted_rise_in_false_positive_scores_is_output_drift():
    _, reference = table_of(1)
    _, current = table_of(2, fp_shift=0.25)
    comparison = detection_comparison(reference, current, **SETTINGS)
    drifted = {f["subject"] for f in comparison["findings"] if f["kind"] == "output_drift"}
    assert "candidate_score" in drifted
    assert comparison["outputs"]["candidate_score"]["current_mean"] > comparison["outputs"]["candidate_score"]["reference_mean"]
    assert not [f for f in comparison["findings"] if f["kind"] == "input_drift"]


def test_a_planted_loss_of_sensitivity_is_a_cpm_degradation_measured_as_the_froc_measures_it():
    ref_cases, reference = table_of(3)
    cur_cases, current = table_of(4, found=0.45)
    comparison = detection_comparison(reference, current, **SETTINGS)
    [row] = comparison["performance"]["lesions"]["metrics"]
    direct = froc(cur_cases, n_resamples=0).cpm - froc(ref_cases, n_resamples=0).cpm
    assert row["metric"] == "cpm" and row["delta"] == pytest.approx(direct, abs=1e-12)
    assert row["degraded"] and row["ci_high"] < 0
    finding = next(f for f in comparison["findings"] if f["kind"] == "performance_degradation")
    assert finding["subject"] == "lesions:cpm" and finding["severity"] == "critical"  # a drop of about 0.4: over twice the margin


def test_a_planted_input_shift_is_input_drift_and_the_lesion_prevalence_is_tested():
    _, reference = table_of(5)
    _, current = table_of(6, mean_shift=0.5)
    comparison = detection_comparison(reference, current, **SETTINGS)
    assert {f["subject"] for f in comparison["findings"] if f["kind"] == "input_drift"} == {"image_mean"}
    prevalence = comparison["prevalence"]["nodule"]
    assert 0.4 < prevalence["reference"] < 0.8 and not prevalence["significant"]


def test_the_case_table_keeps_the_detections_and_refuses_a_classification_baseline():
    cases, table = table_of(7)
    again = CaseTable.from_file(io.BytesIO(table.to_bytes()))
    assert np.array_equal(again.detections.scores, np.concatenate([c.scores for c in cases]))
    assert again.detections.hit.sum() == sum(int((c.lesion_of >= 0).sum()) for c in cases)
    assert again.labels[:, 0].tolist() == [int(c.n_lesions > 0) for c in cases]
    assert again.scores[:, 0].tolist() == [float(c.scores.max()) if c.scores.size else 0.0 for c in cases]
    classification = CaseTable(
        patient_keys=again.patient_keys,
        label_names=again.label_names,
        labels=again.labels,
        class_names=again.class_names,
        scores=again.scores,
    )
    with pytest.raises(BaselineError, match="detection run"):
        detection_comparison(classification, again, **SETTINGS)
    with pytest.raises(BaselineError, match="detection run"):
        baseline_comparison(again, classification, thresholds={}, **SETTINGS)
