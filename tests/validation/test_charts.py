"""SVG charts of a real pipeline report: valid SVG naming what each shows, stable bytes, partial reports."""

from __future__ import annotations

import copy
import hashlib
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from radtrust_demo.networks import export_tiny_classifier
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device
from validation.charts import (
    drift_chart,
    forest_chart,
    reliability_chart,
    report_charts,
    robustness_chart,
    roc_chart,
    slug,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

LABELS = ("nodule", "effusion")
MIN_PATIENTS = 10
SVG = "{http://www.w3.org/2000/svg}"


def _histogram(seed: int, shift: float) -> dict:
    """A drift histogram in the shape the baseline comparison stores: densities on shared edges."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(-3, 4, 31)
    return {
        "edges": edges.tolist(),
        "reference": np.histogram(rng.normal(0, 1, 400), edges, density=True)[0].tolist(),
        "current": np.histogram(rng.normal(shift, 1.2, 300), edges, density=True)[0].tolist(),
        "ks": 0.18,
        "psi": 0.27,
        "drifted": True,
        "level": "major",
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """A two-label report from the pipeline with calibration and robustness; site C (6 patients) is suppressed,
    and site A withheld to protect it."""
    root: Path = tmp_path_factory.mktemp("charts")
    model = export_tiny_classifier(root / "model", seed=3, classes=len(LABELS))[0]
    n = 60
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    for i in range(n):
        np.save(root / "img" / f"{i}.npy", rng.normal(0, 1, (64, 64)).astype(np.float32))
    labels = rng.integers(0, 2, (n, len(LABELS)))
    labels[::2] = 1 - labels[1::2]  # each patient has a positive and a negative image: a group's classes are as large as it
    rows = ["image_path,patient_id,sex,site," + ",".join(LABELS)]
    rows += [
        f"img/{i}.npy,p{i // 2},{'FM'[(i // 2) % 2]},{'A' if i < 24 else 'B' if i < 48 else 'C'}," + ",".join(map(str, labels[i])) for i in range(n)
    ]
    (root / "m.csv").write_text("\n".join(rows))
    manifest = read_manifest(root / "m.csv", root, label_columns=list(LABELS), class_names=list(LABELS))
    config = SuiteConfig(n_resamples=20, min_patients=MIN_PATIENTS, analyses=("calibration", "robustness"), calibration_bins=5)
    result = evaluate(
        open_session(model, select_device(prefer_gpu=False)),
        manifest,
        task="multilabel",
        class_names=list(LABELS),
        thresholds={},
        preprocessing=Preprocessing.from_spec({}),
        config=config,
        activation="sigmoid",
    )
    data = result.report
    for label in LABELS:  # the pipeline adds the ROC points; older engines did not
        overall = data["results"][label]["overall"]["metrics"]["auroc"]
        data["results"][label].setdefault(
            "roc",
            {
                "fpr": [0.0, 0.1, 0.4, 1.0],
                "tpr": [0.0, 0.5, 0.8, 1.0],
                "auroc": overall["value"],
                "ci_low": overall["ci_low"],
                "ci_high": overall["ci_high"],
            },
        )
    data["drift"] = {"histograms": {"image_mean": _histogram(1, 0.4), "score_nodule": _histogram(2, 0.1)}}
    return data


@pytest.fixture(scope="module")
def charts(report):
    return {chart.name: chart for chart in report_charts(report)}


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def test_report_charts_draws_every_supported_chart(charts):
    expected = [f"{kind}-{label}" for label in LABELS for kind in ("roc", "reliability", "forest-auroc", "forest-sensitivity", "robustness")] + [
        "drift-image-mean",
        "drift-score-nodule",
    ]
    assert list(charts) == expected


def test_each_chart_is_small_valid_svg_with_its_title_as_text(charts):
    for chart in charts.values():
        texts = _texts(chart.svg)
        assert chart.title in texts, chart.name
        assert len(chart.svg.encode()) < 80_000, chart.name
        assert chart.alt.endswith(".") and chart.alt.count(". ") == 0, chart.alt  # one sentence
        assert chart.alt in chart.svg  # in the SVG's metadata too
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # the house style did not leak


def test_charts_name_what_they_show(report, charts):
    result = report["results"]["nodule"]
    roc = " ".join(_texts(charts["roc-nodule"].svg))
    assert f"AUROC {result['roc']['auroc']:.3f}" in roc and "95% CI" in roc and "chance" in roc

    reliability = " ".join(_texts(charts["reliability-nodule"].svg))
    assert "5 uniform bins" in reliability and f"ECE {result['calibration']['ece']['value']:.3f}" in reliability
    for b in result["calibration"]["bins"]:
        if b["count"]:
            assert str(b["count"]) in _texts(charts["reliability-nodule"].svg)

    forest = _texts(charts["forest-auroc-nodule"].svg)
    # Site C (6 patients) is suppressed, and site A withheld: overall minus A and B would give C.
    assert {"sex", "site", "F (n=15)", "M (n=15)", "B (n=12)", f"C (<{MIN_PATIENTS})", "A (withheld)"} <= set(forest)
    assert forest.count(f"suppressed (n < {MIN_PATIENTS})") == 1  # site C: no point, the reason instead
    assert not any("n=6" in t or "n=12)" in t and t.startswith("A") for t in forest)  # no count of a hidden site

    robustness = _texts(charts["robustness-nodule"].svg)
    perturbations = {c["perturbation"] for c in result["robustness"]["conditions"]}
    assert perturbations <= set(robustness)
    assert any(t.startswith(f"worst: {result['robustness']['worst_case']['condition']}") for t in robustness)

    drift = charts["drift-image-mean"]
    assert drift.title == "Drift of image_mean: KS 0.180, PSI 0.270 (drifted, PSI major)"
    assert {"reference (baseline run)", "current run"} <= set(_texts(drift.svg))


def test_rendering_twice_gives_identical_bytes(report, charts):
    again = report_charts(copy.deepcopy(report))
    assert [hashlib.sha256(c.svg.encode()).hexdigest() for c in again] == [hashlib.sha256(c.svg.encode()).hexdigest() for c in charts.values()]


def test_sections_with_errors_or_missing_give_no_chart_and_never_raise(report):
    partial = copy.deepcopy(report)
    nodule = partial["results"]["nodule"]
    nodule["calibration"] = {"error": "y_prob holds values outside [0, 1]"}
    nodule["robustness"] = {"error": "no case was kept for this analysis"}
    del nodule["roc"]
    partial["results"]["effusion"] = {"error": "the label could not be evaluated"}
    partial["drift"] = {"error": "the baseline's case table cannot be read"}
    assert [c.name for c in report_charts(partial)] == ["forest-auroc-nodule", "forest-sensitivity-nodule"]
    assert report_charts({}) == []
    assert report_charts({"results": None, "drift": {"histograms": {"image_std": {"error": "too few values"}}}}) == []


def test_a_malformed_section_is_logged_and_skipped(report, caplog):
    broken = copy.deepcopy(report)
    broken["results"]["nodule"]["roc"]["tpr"] = [0.0, 1.0]  # not as long as fpr
    broken["drift"]["histograms"]["image_mean"]["current"] = [1.0]
    with caplog.at_level(logging.WARNING, logger="validation.charts"):
        names = [c.name for c in report_charts(broken)]
    assert "roc-nodule" not in names and "drift-image-mean" not in names and "roc-effusion" in names
    assert "chart roc-nodule skipped" in caplog.text


def test_without_bootstrap_intervals_the_values_stand_alone():
    chart = roc_chart("nodule", {"fpr": [0, 0.2, 1], "tpr": [0, 0.7, 1], "auroc": 0.75, "ci_low": None, "ci_high": None})
    assert "AUROC 0.750" in _texts(chart.svg) and "CI" not in chart.alt


def test_each_chart_function_alone(report):
    result = report["results"]["effusion"]
    assert reliability_chart("effusion", result["calibration"]).name == "reliability-effusion"
    assert forest_chart("effusion", "specificity", result).title == "Specificity by subgroup: effusion"
    assert robustness_chart("effusion", result["robustness"]).name == "robustness-effusion"
    counts = {"edges": [0, 1, 2, 4], "reference": [10, 30, 20], "current": [5, 5, 50], "ks": 0.4, "psi": 0.9, "drifted": True}
    assert drift_chart("image p99", counts).name == "drift-image-p99"  # counts are drawn as densities too


def test_segmentation_reports_get_a_dice_forest_plot():
    from radtrust_engine.segmentation import stratified_segmentation

    rng = np.random.default_rng(0)
    dice = rng.uniform(0.5, 0.9, 40)
    stratified = stratified_segmentation(
        dice,
        dice * 0.8,
        np.arange(40) // 2,
        {"site": np.array(["A", "B"] * 20)},
        n_resamples=20,
        min_patients=5,
    ).to_dict()
    assert [c.name for c in report_charts({"task": "segmentation", "results": {"foreground": stratified}})] == ["forest-dice-foreground"]


def test_slug_makes_file_names_from_label_names():
    assert slug("Pneumothorax (left)") == "pneumothorax-left"
    assert slug("épanchement") == "epanchement"
    assert slug("$$$") == "unnamed"
