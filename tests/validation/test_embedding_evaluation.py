"""Embedding evaluation inside a validation run: the embedding output read from the inference
stage's own forward passes (equal to bare ONNX Runtime), the data-efficiency section on a planted
effect with a comparator, the embedding MMD in the drift family, and the bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from radtrust_demo.vit import EMBEDDING_OUTPUT, VIT_SMALL, export_vit
from radtrust_engine.baseline import Baseline, CaseTable, baseline_comparison
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import ModelOutputError, SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.report import RunReport
from radtrust_engine.runner import open_session, select_device

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
FRACTIONS = (0.1, 0.5, 1.0)


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> Path:
    return export_vit(tmp_path_factory.mktemp("vit"), VIT_SMALL)[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """120 images of 60 patients; a positive patient's images carry a bright square (the planted effect)."""
    root = tmp_path_factory.mktemp("embedding-data")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    positive = np.repeat(rng.random(60) < 0.4, 2)
    images = rng.normal(0, 1, (120, 64, 64)).astype(np.float32)
    for i in range(120):
        if positive[i]:
            y, x = rng.integers(0, 48, 2)
            images[i, y : y + 16, x : x + 16] += 2.5
        np.save(root / "img" / f"{i}.npy", images[i])
    rows = ["image_path,patient_id,sex,finding"] + [f"img/{i}.npy,p{i // 2},{'FM'[i // 2 % 2]},{int(positive[i])}" for i in range(120)]
    (root / "m.csv").write_text("\n".join(rows))
    return read_manifest(root / "m.csv", root, label_columns=["finding"]), images


def _evaluate(vit, manifest, *, embedding_output=EMBEDDING_OUTPUT, comparator=None, analyses=("data_efficiency",)):
    return evaluate(
        open_session(vit, select_device(prefer_gpu=False)),
        manifest,
        task="binary",
        class_names=["finding"],
        thresholds={"finding": 0.5},
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(n_resamples=20, min_patients=5, batch_size=16, analyses=analyses, label_fractions=FRACTIONS, label_repeats=3),
        embedding_output=embedding_output,
        comparator=comparator,
    )


def test_embeddings_come_from_the_inference_pass_and_equal_bare_onnx_runtime(vit, dataset):
    manifest, images = dataset
    result = _evaluate(vit, manifest)
    inference = result.report["inference"]
    assert inference["forward_passes"] == len(manifest)  # one pass per image gave scores and embeddings
    assert inference["output_shapes"][EMBEDDING_OUTPUT] == [len(manifest), VIT_SMALL.width]
    logits, embedding = ort.InferenceSession(str(vit)).run(["logits", EMBEDDING_OUTPUT], {"image": images[:, None]})
    np.testing.assert_allclose(result.cases.embeddings, embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.scores[:, 0], logits[:, 0], rtol=1e-4, atol=1e-5)
    assert result.cases.case_rows.tolist() == list(range(len(manifest)))


def test_the_data_efficiency_section_finds_the_planted_effect_and_the_paired_comparator(vit, dataset):
    manifest, _ = dataset
    first = _evaluate(vit, manifest)
    noise = np.random.default_rng(5).normal(size=first.cases.embeddings.shape)  # a comparator with nothing to learn
    table = CaseTable(**{**first.cases.__dict__, "embeddings": noise})
    result = _evaluate(vit, manifest, comparator=Baseline(table=table, source={"run": 7, "version": "noise 1.0"}))
    section = RunReport.from_dict(result.report).data_efficiency
    assert section["embedding_output"] == EMBEDDING_OUTPUT and section["dimensions"] == VIT_SMALL.width
    assert section["comparator"] == {"run": 7, "version": "noise 1.0", "n_cases_paired": len(manifest)}
    logistic = section["labels"]["finding"]["logistic"]
    assert [p["fraction"] for p in logistic["curve"]] == list(FRACTIONS)
    full, comparator, difference = logistic["curve"][-1], logistic["comparator"][-1], logistic["difference"][-1]
    assert full["auroc"] > 0.75 > comparator["auroc"]
    assert difference["auroc"] == pytest.approx(full["auroc"] - comparator["auroc"])
    assert difference["ci_low"] > 0
    assert full["ci_low"] <= full["auroc"] <= full["ci_high"]
    assert len(full["repeats"]) == 3
    assert section["labels"]["finding"]["knn"]["curve"][-1]["auroc"] > 0.6


def test_a_declared_embedding_output_missing_from_the_graph_fails_the_run_saying_so(vit, dataset):
    manifest, _ = dataset
    with pytest.raises(ModelOutputError, match=r"names embedding output 'features', but the model's outputs are logits, embedding"):
        _evaluate(vit, manifest, embedding_output="features")
    with pytest.raises(ModelOutputError, match=r"is the model's first output"):
        _evaluate(vit, manifest, embedding_output="logits")


def test_without_an_embedding_output_the_section_says_why_and_the_run_stands(vit, dataset):
    manifest, _ = dataset
    result = _evaluate(vit, manifest, embedding_output=None)
    assert "declares no embedding output" in result.report["data_efficiency"]["error"]
    assert result.cases.embeddings is None
    assert result.report["results"]["finding"]["overall"]["metrics"]["auroc"]["value"] is not None


def test_a_comparator_without_embeddings_is_named_and_the_curve_stands(vit, dataset):
    manifest, _ = dataset
    first = _evaluate(vit, manifest, embedding_output=None)
    result = _evaluate(vit, manifest, comparator=Baseline(table=first.cases, source={"run": 3}))
    section = result.report["data_efficiency"]
    assert section["comparator"] is None and "kept no embeddings" in section["comparator_problem"]
    assert section["labels"]["finding"]["logistic"]["comparator"] is None


def _table(embeddings: np.ndarray, patients: np.ndarray) -> CaseTable:
    n = embeddings.shape[0]
    rng = np.random.default_rng(n)
    return CaseTable(
        patient_keys=patients,
        label_names=("finding",),
        labels=(rng.random((n, 1)) < 0.3).astype(np.int8),
        class_names=("finding",),
        scores=rng.random((n, 1)),
        embeddings=embeddings,
        case_rows=np.arange(n),
    )


def test_embedding_drift_joins_the_alert_family_and_survives_the_case_table_file():
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(150), 2).astype(str)
    reference = _table(rng.normal(size=(300, 16)), patients)
    same = _table(rng.normal(size=(300, 16)), np.char.add("b", patients))
    shifted = _table(rng.normal(size=(300, 16)) + 0.5, np.char.add("c", patients))

    quiet = baseline_comparison(reference, same, thresholds={"finding": 0.5}, n_resamples=50, seed=0)
    loud = baseline_comparison(
        reference, CaseTable.from_file(__import__("io").BytesIO(shifted.to_bytes())), thresholds={"finding": 0.5}, n_resamples=50, seed=0
    )
    assert quiet["embedding"]["drifted"] is False
    assert not any(f["subject"] == "embedding" for f in quiet["findings"])
    test = loud["embedding"]["test"]
    assert loud["embedding"]["drifted"] is True and loud["embedding"]["n_reference"] == 150
    assert test["family_size"] == loud["thresholds"]["family_size"] and test["kind"] == "input_drift"
    assert test["p_adjusted"] >= test["p_value"]
    (finding,) = [f for f in loud["findings"] if f["subject"] == "embedding"]
    assert finding["kind"] == "input_drift" and "embeddings drifted" in finding["message"]


def test_embedding_drift_needs_both_runs_embeddings():
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(50), 2).astype(str)
    with_embeddings = _table(rng.normal(size=(100, 8)), patients)
    without = CaseTable(**{**_table(rng.normal(size=(100, 8)), patients).__dict__, "embeddings": None})
    result = baseline_comparison(without, with_embeddings, thresholds={}, n_resamples=20, seed=0)
    assert "the baseline run kept no embeddings" in result["embedding"]["error"]
    assert "embedding" not in baseline_comparison(without, without, thresholds={}, n_resamples=20, seed=0)


def test_the_section_reads_as_tables_and_a_chart_for_people():
    from radtrust_engine.data_efficiency import efficiency_section
    from validation.charts import efficiency_chart, report_charts
    from validation.report_tables import efficiency_tables

    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(100), 2).astype(str)
    labels = np.repeat(rng.random(100) < 0.4, 2).astype(np.int8)[:, None]
    x = rng.normal(size=(200, 8))
    x[:, 0] += 1.5 * labels[:, 0]
    rows = np.arange(200)
    section = efficiency_section(
        x,
        labels,
        ["finding"],
        patients,
        rows,
        embedding_output=EMBEDDING_OUTPUT,
        comparator=(rows, rng.normal(size=(200, 8))),
        comparator_source={"run": 4, "version": "other 1.0"},
        fractions=(0.1, 1.0),
        repeats=3,
        target_auroc=0.7,
    )
    tables = efficiency_tables({"data_efficiency": section})
    (table,) = tables.tables
    assert table.head[-2:] == ["AUROC, comparator", "Difference"]
    assert [row[0] for row in table.rows] == ["10%", "100%"]
    assert " to " in table.rows[-1][2]  # the estimate with its interval
    assert "Comparator: run 4 (other 1.0)" in tables.note
    assert tables.targets[0][0] == "finding" and "labelled cases for AUROC 0.7" in tables.targets[0][1]
    chart = efficiency_chart("finding", section["labels"]["finding"])
    assert chart.name == "efficiency-finding" and "<svg" in chart.svg and "labelled training cases" in chart.alt
    assert [c.name for c in report_charts({"data_efficiency": section})] == ["efficiency-finding"]
    assert efficiency_tables({"data_efficiency": {"error": "no embedding output"}}).error == "no embedding output"
    assert efficiency_tables({}) is None
