"""Reader variability: agreement statistics against reference implementations, the model among
the readers, and reader values the engine cannot read."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from radtrust_engine.readers import (
    cohen_kappa,
    dice_ceiling,
    fleiss_kappa,
    kappa_interval,
    labels_from_long_table,
    labels_from_rows,
    majority,
    reader_agreement,
)


def _readers(n: int, n_readers: int, flip: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    flips = rng.random((n, n_readers)) < flip
    return (truth[:, None] ^ flips).astype(int)


def test_cohen_kappa_matches_sklearn():
    values = _readers(300, 2, 0.15)
    assert abs(cohen_kappa(values[:, 0], values[:, 1]) - cohen_kappa_score(values[:, 0], values[:, 1])) <= 1e-12


def test_fleiss_kappa_matches_statsmodels():
    values = _readers(200, 4, 0.2)
    table, _ = aggregate_raters(values)
    assert abs(fleiss_kappa(values) - sm_fleiss(table)) <= 1e-12


def test_kappa_interval_covers_the_estimate_and_narrows_with_more_patients():
    small = kappa_interval(_readers(60, 2, 0.1), [str(i) for i in range(60)], n_resamples=400)
    large = kappa_interval(_readers(600, 2, 0.1), [str(i) for i in range(600)], n_resamples=400)
    assert small.low < small.value < small.high
    assert (large.high - large.low) < (small.high - small.low)


def test_kappa_interval_resamples_patients_not_cases():
    values = _readers(80, 2, 0.2)
    per_case = kappa_interval(values, [str(i) for i in range(80)], n_resamples=400)
    per_patient = kappa_interval(values, [str(i // 8) for i in range(80)], n_resamples=400)
    assert per_case.value == per_patient.value
    assert (per_patient.high - per_patient.low) != (per_case.high - per_case.low)


def test_columns_with_unknown_values_skip_the_case_with_the_reason():
    rows = [
        {"case_id": "a", "patient_id": "p1", "reader:r1:nodule": "1", "reader:r2:nodule": "yes"},
        {"case_id": "b", "patient_id": "p2", "reader:r1:nodule": "0", "reader:r2:nodule": "maybe"},
        {"case_id": "c", "patient_id": "p3", "reader:r1:nodule": 0, "reader:r2:nodule": "negative"},
    ]
    labels = labels_from_rows(rows)["nodule"]
    assert labels.readers == ["r1", "r2"]
    assert labels.case_ids == ["a", "c"]
    assert labels.values.tolist() == [[1, 1], [0, 0]]
    assert labels.skipped[0].case_id == "b"
    assert "r2='maybe'" in labels.skipped[0].reason


def test_long_table_gives_the_same_matrix_as_columns():
    wide = [{"case_id": f"c{i}", "reader:ann:x": i % 2, "reader:bob:x": (i // 2) % 2} for i in range(6)]
    long = [{"case_id": r["case_id"], "reader": name, "label": "x", "value": r[f"reader:{name}:x"]} for r in wide for name in ("bob", "ann")]
    a, b = labels_from_rows(wide)["x"], labels_from_long_table(long)["x"]
    assert a.readers == b.readers == ["ann", "bob"]
    assert np.array_equal(a.values, b.values)


def test_a_reader_missing_a_case_skips_it():
    long = [
        {"case_id": "1", "reader": "r1", "label": "x", "value": 1},
        {"case_id": "1", "reader": "r2", "label": "x", "value": 1},
        {"case_id": "2", "reader": "r1", "label": "x", "value": 0},
    ]
    labels = labels_from_long_table(long)["x"]
    assert labels.case_ids == ["1"]
    assert "r2=None" in labels.skipped[0].reason


def test_majority_marks_ties():
    assert majority(np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]])).tolist() == [1, 0, 0]
    assert majority(np.array([[1, 0], [1, 1]])).tolist() == [-1, 1]


def test_model_as_good_as_a_reader_lies_within_their_range():
    values = _readers(400, 3, 0.05, seed=3)
    rows = [{"case_id": str(i), **{f"reader:r{j}:x": int(values[i, j]) for j in range(3)}} for i in range(400)]
    labels = labels_from_rows(rows)["x"]
    truth = majority(values)
    rng = np.random.default_rng(9)
    scores = {str(i): float(truth[i] ^ (rng.random() < 0.04)) for i in range(400)}
    result = reader_agreement(labels, scores, n_resamples=200)
    assert result.statistic == "Fleiss' kappa"
    assert result.kappa.value > 0.6 and not result.low_agreement
    assert result.model_position in {"within", "above"}
    assert set(result.model_vs_reader) == {"r0", "r1", "r2"}
    assert result.model_vs_majority.value > 0.8
    always_negative = reader_agreement(labels, {str(i): 0.0 for i in range(400)}, n_resamples=50)
    assert always_negative.model_position == "below"
    assert always_negative.model_point.sensitivity == 0.0


def test_disagreeing_readers_are_flagged_and_unscored_cases_listed():
    values = _readers(300, 2, 0.3, seed=5)
    rows = [{"case_id": str(i), "reader:a:x": int(values[i, 0]), "reader:b:x": int(values[i, 1])} for i in range(300)]
    result = reader_agreement(labels_from_rows(rows)["x"], {str(i): 0.9 for i in range(290)}, n_resamples=100)
    assert result.statistic == "Cohen's kappa"
    assert result.low_agreement
    assert result.to_dict()["low_agreement_threshold"] == 0.6
    assert sum(s.reason == "no model score for this case" for s in result.skipped) == 10


def test_dice_ceiling_is_the_mean_pairwise_reader_dice():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    empty = np.zeros((4, 4), bool)
    assert dice_ceiling([{"r1": a, "r2": b}, {"r1": empty, "r2": empty}]) == pytest.approx((0.5 + 1.0) / 2)


def _evidence_with_readers(kappa: float):
    from tests.validation.test_trust_rules import gap, label, report, run, version

    rep = report({"nodule": label(gaps=[gap("auroc", "sex", 0.02, 0.01, 0.03)])})
    rep["readers"] = {"nodule": {"statistic": "Cohen's kappa", "kappa": {"value": kappa, "low": kappa - 0.1, "high": kappa + 0.1}}}
    return version(runs=(run(1, rep),))


def test_a_fairness_verdict_on_labels_readers_disagree_about_says_so():
    from compliance.trust.assess import assess
    from compliance.trust.policy import DEFAULT_POLICY

    low = assess(_evidence_with_readers(0.45), DEFAULT_POLICY)
    gap_criteria = [c for c in low["fairness"].criteria if c.inputs.get("low_reader_agreement")]
    assert gap_criteria, "a run-linked fairness criterion carries the caveat"
    assert all("Cohen's kappa 0.45" in c.explanation and "below kappa 0.6" in c.explanation for c in gap_criteria)
    assert not any(c.inputs.get("low_reader_agreement") for c in low["universality"].criteria)
    high = assess(_evidence_with_readers(0.85), DEFAULT_POLICY)
    assert not any("below kappa" in c.explanation for c in high["fairness"].criteria)


def test_reader_section_survives_the_stored_report():
    from radtrust_engine.report import RunReport
    from tests.validation.test_trust_rules import label, report

    rep = report({"nodule": label()})
    rep["readers"] = {"nodule": {"kappa": {"value": 0.5}}}
    assert RunReport.from_dict(rep).to_dict()["readers"] == rep["readers"]
    assert "readers" not in RunReport.from_dict(report({"nodule": label()})).to_dict()


def test_a_run_with_reader_columns_reports_their_agreement_and_skips_unknown_values(tmp_path):
    from radtrust_demo.networks import export_tiny_classifier
    from radtrust_engine.loading import read_manifest
    from radtrust_engine.pipeline import SuiteConfig, evaluate
    from radtrust_engine.preprocessing import Preprocessing
    from radtrust_engine.runner import open_session, select_device

    model = export_tiny_classifier(tmp_path / "bin", seed=4)[0]
    n = 40
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(tmp_path / "img" / f"{i}.npy", rng.normal(0, 1, (64, 64)).astype(np.float32))
    values = _readers(n, 2, 0.1, seed=2)
    second = [str(v) for v in values[:, 1]]
    second[3] = "unsure"
    lines = ["image_path,patient_id,finding,reader:ann:finding,reader:bob:finding"]
    lines += [f"img/{i}.npy,p{i // 2},{values[i, 0]},{values[i, 0]},{second[i]}" for i in range(n)]
    (tmp_path / "m.csv").write_text("\n".join(lines))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=["finding"], class_names=["finding"])
    result = evaluate(
        open_session(model, select_device(prefer_gpu=False)),
        manifest,
        task="binary",
        class_names=["finding"],
        thresholds={"finding": 0.5},
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(n_resamples=30, min_patients=5, batch_size=16),
        activation="sigmoid",
    )
    section = result.report["readers"]["finding"]
    kept = [i for i in range(n) if i != 3]
    assert section["n_cases"] == n - 1
    assert section["kappa"]["value"] == round(cohen_kappa_score(values[kept, 0], values[kept, 1]), 3)
    assert section["skipped"][0]["case_id"] == "img/3.npy" and "bob='unsure'" in section["skipped"][0]["reason"]
    assert set(section["model_vs_reader"]) == {"ann", "bob"}
    assert section["model_position"] in {"below", "within", "above", "unknown"}
