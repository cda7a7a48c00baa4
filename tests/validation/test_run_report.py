"""The run report as typed dataclasses (``radtrust_engine.report``): a real evaluation's report reads
back equal, writes out the stored JSON unchanged (the same keys, in the same order, byte for byte),
and a report an older engine stored, without the later sections, round-trips as well."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from radtrust_demo.networks import export_thresholding_segmenter, export_tiny_classifier
from radtrust_engine.baseline import Baseline
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.report import DriftFinding, LabelResult, ReportFormatError, RunReport, SkippedImage
from radtrust_engine.runner import open_session, select_device
from radtrust_engine.stratification import FairnessGap, SubgroupResult

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

LABELS = ["effusion", "nodule"]
ANALYSES = ["calibration", "generalisation", "drift", "robustness", "uncertainty", "explainability"]
# The stored JSON (ValidationRun.results) as the engine wrote it before the report was typed.
TOP_KEYS = [
    "engine_version",
    "task",
    "config",
    "preprocessing",
    "activation",
    "output_mapping",
    "model",
    "dataset",
    "skipped",
    "images_read",
    "images_read_per_image",
    "inference",
    "results",
    "drift",
]
DATASET_KEYS = [
    "n_images",
    "n_evaluated",
    "n_patients",
    "label_names",
    "prevalence",
    "attributes_not_collected",
    "intersections_not_evaluated",
    "header_fill",
    "conversions",
]
LABEL_KEYS = ["threshold", "n_resamples", "seed", "confidence", "min_patients", "overall", "subgroups", "gaps", "roc", *ANALYSES[:2], *ANALYSES[3:]]
SEGMENTATION_KEYS = ["n_resamples", "seed", "confidence", "min_patients", "overall", "subgroups", "gaps"]
SUBGROUP_KEYS = ["grouping", "name", "attributes", "values", "n_cases", "n_patients", "n_positive", "suppressed", "reason", "metrics"]
GAP_KEYS = [
    "kind",
    "attributes",
    "component",
    "group_high",
    "group_low",
    "value",
    "ci_low",
    "ci_high",
    "n_valid",
    "n_groups_compared",
    "components",
    "critical_value",
    "mdd",
    "mdd_patients",
    "grouping",
]
DRIFT_KEYS = [
    "baseline",
    "n_baseline_cases",
    "n_cases",
    "n_shared_patients",
    "degradation_margin",
    "thresholds",
    "performance",
    "prevalence",
    "outputs",
    "inputs",
    "histograms",
    "findings",
]


def _dataset(root: Path, *, seed: int, offset: float = 0.0, broken: tuple[int, ...] = ()) -> Path:
    """60 NPY images of 30 patients at two sites; ``broken`` rows hold bytes that are no image."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (60, 2))
    rows = ["image_path,patient_id,sex,site,age," + ",".join(LABELS)]
    for i in range(60):
        path = root / "img" / f"{i}.npy"
        if i in broken:
            path.write_bytes(b"not an image")
        else:
            np.save(path, (rng.normal(0, 1, (64, 64)) + labels[i, 0] + offset).astype(np.float32))
        rows.append(f"img/{i}.npy,p{i // 2},{'FM'[(i // 2) % 2]},{'AB'[i % 2]},{20 + i},{labels[i, 0]},{labels[i, 1]}")
    (root / "m.csv").write_text("\n".join(rows))
    return root


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """A multi-label run with every analysis and a skipped image, a later run on brighter images compared
    with it (drift computed, with findings), and a segmentation run (drift refused, with the reason)."""
    root = tmp_path_factory.mktemp("run-report")
    session = open_session(export_tiny_classifier(root / "model", seed=3, classes=2)[0], select_device(prefer_gpu=False))
    config = SuiteConfig.from_dict(
        {
            "n_resamples": 20,
            "min_patients": 3,
            "max_unreadable_share": 0.1,
            "explain_cases": 4,
            "rise_masks": 50,
            "sample_max_cases": 12,
            "tta_augmentations": 2,
            "analyses": ANALYSES,
        }
    )

    def run(folder: Path, baseline: Baseline | None = None):
        manifest = read_manifest(folder / "m.csv", folder, label_columns=LABELS, class_names=LABELS)
        return evaluate(
            session,
            manifest,
            task="multilabel",
            class_names=LABELS,
            thresholds={"effusion": 0.4},
            preprocessing=Preprocessing.from_spec({}),
            config=config,
            activation="sigmoid",
            baseline=baseline,
            modality="DX",
        )

    first = run(_dataset(root / "first", seed=0, broken=(5,)))
    later = run(_dataset(root / "later", seed=1, offset=1.5), Baseline(table=first.cases, source={"run": 1, "dataset": "first"}))
    return {"first": first, "later": later, "segmentation": _segmentation(root / "segmentation")}


def _segmentation(root: Path):
    (root / "img").mkdir(parents=True)
    (root / "mask").mkdir()
    rng = np.random.default_rng(2)
    rows = ["image_path,mask_path,patient_id,site"]
    for i in range(20):
        mask = np.zeros((64, 64), np.uint8)
        mask[10:30, 10 + i : 30 + i] = 1
        np.save(root / "img" / f"{i}.npy", (rng.normal(0, 0.3, (64, 64)) + 3 * mask).astype(np.float32))
        np.save(root / "mask" / f"{i}.npy", mask)
        rows.append(f"img/{i}.npy,mask/{i}.npy,p{i // 2},{'AB'[i % 2]}")
    (root / "m.csv").write_text("\n".join(rows))
    manifest = read_manifest(root / "m.csv", root, label_columns=[], mask_column="mask_path")
    session = open_session(export_thresholding_segmenter(root / "model"), select_device(prefer_gpu=False))
    return evaluate(
        session,
        manifest,
        task="segmentation",
        class_names=["lesion"],
        thresholds={"lesion": 0.5},
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(n_resamples=10, min_patients=3),
    )


@pytest.mark.parametrize("name", ["first", "later", "segmentation"])
def test_a_real_report_round_trips_equal_and_writes_the_stored_json_unchanged(evaluations, name):
    report = evaluations[name].run_report
    assert RunReport.from_dict(report.to_dict()) == report
    stored = json.loads(json.dumps(evaluations[name].report))  # as the JSON column gives it back
    assert RunReport.from_dict(stored) == report
    assert json.dumps(RunReport.from_dict(stored).to_dict()) == json.dumps(stored)  # same keys, same order, same values


def test_the_stored_json_keeps_its_keys(evaluations):
    first, later, segmentation = (evaluations[n].report for n in ("first", "later", "segmentation"))
    assert list(first) == TOP_KEYS and list(segmentation) == TOP_KEYS
    assert list(first["dataset"]) == DATASET_KEYS
    assert first["skipped"] == [{"row": 6, "image_path": "img/5.npy", "reason": first["skipped"][0]["reason"], "kind": "unreadable"}]
    for label in LABELS:
        section = first["results"][label]
        assert list(section) == LABEL_KEYS
        assert list(section["overall"]) == SUBGROUP_KEYS and all(list(s) == SUBGROUP_KEYS for s in section["subgroups"])
        assert section["gaps"] and all(list(g) == GAP_KEYS for g in section["gaps"])
        assert list(section["roc"]) == ["fpr", "tpr", "auroc", "ci_low", "ci_high"]
        assert list(section["overall"]["metrics"]["auroc"]) == ["value", "ci_low", "ci_high", "n_valid"]
    assert list(segmentation["results"]) == ["foreground"] and list(segmentation["results"]["foreground"]) == SEGMENTATION_KEYS
    assert list(segmentation["drift"]) == ["baseline", "error"] and list(first["drift"]) == ["baseline", "error"]
    assert list(later["drift"]) == DRIFT_KEYS
    assert later["drift"]["findings"] and all(list(f) == ["kind", "severity", "subject", "message", "evidence"] for f in later["drift"]["findings"])


def test_readers_get_attributes(evaluations):
    report = RunReport.from_dict(evaluations["later"].report)
    nodule = report.results["nodule"]
    assert isinstance(nodule, LabelResult) and isinstance(nodule.overall, SubgroupResult) and isinstance(nodule.gaps[0], FairnessGap)
    assert nodule.threshold == 0.5 and report.results["effusion"].threshold == 0.4
    assert nodule.overall.metrics["auroc"].value == nodule.roc.auroc
    assert {s.grouping for s in nodule.subgroups} >= {"sex", "site", "sex x age_band"}
    assert nodule.calibration["n_bins"] == 10 and nodule.computed("robustness") is not None
    assert report.dataset.n_evaluated == 60 and report.dataset.label_names == tuple(LABELS)
    assert report.confidence == 0.95 and "sex" in report.attributes_collected
    assert report.drift_compared and all(isinstance(f, DriftFinding) for f in report.drift.findings)
    assert {f.kind for f in report.drift.findings} >= {"input_drift"}
    first = evaluations["first"].run_report
    assert first.skipped == (SkippedImage(row=6, image_path="img/5.npy", reason=first.skipped[0].reason, kind="unreadable"),)
    assert not first.drift_compared and first.drift.error == "no baseline run was given"
    uncertainty = first.results["nodule"]
    assert len(uncertainty.flagged_cases) == uncertainty.uncertainty["n_flagged"]


def test_a_report_an_older_engine_stored_round_trips_unchanged(evaluations):
    """Before ROC points, the analyses, drift and the read counts: those sections are absent, not empty."""
    older = copy.deepcopy(evaluations["first"].report)
    for key in ("output_mapping", "images_read", "images_read_per_image", "drift"):
        del older[key]
    for section in older["results"].values():
        for key in ("roc", *ANALYSES):
            section.pop(key, None)
    report = RunReport.from_dict(older)
    assert report.to_dict() == older and json.dumps(report.to_dict()) == json.dumps(older)
    assert report.drift is None and report.images_read is None and report.results["nodule"].roc is None
    assert report.results["nodule"].analyses == {} and report.results["nodule"].flagged_cases == ()


def test_the_report_does_not_share_its_sections_with_the_dict_it_was_read_from(evaluations):
    stored = evaluations["first"].report
    report = RunReport.from_dict(stored)
    stored["results"]["nodule"]["calibration"]["n_bins"] = -1
    stored["config"]["confidence"] = 0.5
    assert report.results["nodule"].calibration["n_bins"] == 10 and report.confidence == 0.95
    report.to_dict()["config"]["confidence"] = 0.5
    assert report.confidence == 0.95


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: r.pop("dataset"), "the report has no 'dataset'"),
        (lambda r: r["dataset"].pop("n_evaluated"), "dataset has no 'n_evaluated'"),
        (lambda r: r["results"]["nodule"].pop("overall"), "results['nodule'] has no 'overall'"),
        (lambda r: r["results"].update(nodule=[]), "results['nodule'] must be a JSON object"),
        (lambda r: r["skipped"].append({"row": 1}), "skipped[] has no 'image_path'"),
    ],
)
def test_a_stored_report_missing_a_required_key_is_refused_by_name(evaluations, damage, message):
    stored = evaluations["first"].report
    damage(stored)
    with pytest.raises(ReportFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunReport.from_dict(stored)
