"""The demo's drift story, through the engine as its worker runs it: the nodule model trained as
``manage.py demo`` trains it, a baseline run on the go-live data, and the two later data sets
of ``radtrust_demo.runs.FOLLOW_UP_SETS``. The same sites again must raise no alert; site c's
Vendor B detector must raise its input-drift alerts, each resting on the run's adjusted test."""

from __future__ import annotations

import pytest

from radtrust_demo.data import Population, generate_dataset, train_classifier
from radtrust_demo.runs import FOLLOW_UP_SETS, LABEL
from radtrust_engine.baseline import Baseline
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device

pytestmark = pytest.mark.slow  # trains the demo model and generates three demo data sets

GO_LIVE = ((0.55, 0.45, 0.0), 600, 8)  # radtrust_demo.runs.drift_datasets: sites a and b, 600 images, seed 8


@pytest.fixture(scope="module")
def follow_ups(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-drift")
    trained = train_classifier(root / "model", seed=7, label=LABEL)
    session = open_session(trained.onnx_path, select_device(prefer_gpu=False))

    def run(sites, images, seed, analyses, baseline=None):
        folder = root / f"demo-nodule-{seed}"
        generate_dataset(folder, n_images=images, seed=seed, label=LABEL, population=Population(site_weights=sites))
        manifest = read_manifest(folder / "manifest.csv", folder, label_columns=[LABEL], class_names=[LABEL])
        return evaluate(
            session,
            manifest,
            task="binary",
            class_names=[LABEL],
            thresholds=trained.output_schema["thresholds"],
            preprocessing=Preprocessing.from_spec(trained.preprocessing),
            config=SuiteConfig.from_dict({"analyses": analyses}),
            activation=trained.output_schema.get("activation", "none"),
            baseline=baseline,
            modality="DX",
        )

    go_live = run(*GO_LIVE, ["calibration"])
    baseline = Baseline(table=go_live.cases, source={"run": 1})
    return {name: run(sites, images, seed, ["drift"], baseline).run_report.drift.comparison for name, sites, images, seed in FOLLOW_UP_SETS}


def test_the_same_sites_raise_no_alert(follow_ups):
    same = follow_ups[FOLLOW_UP_SETS[0][0]]
    assert same.findings == () and same.thresholds["family_size"] == 9
    assert not any(result["drifted"] for result in same.inputs.values())


def test_the_vendor_b_site_raises_input_drift_alerts_on_the_adjusted_test(follow_ups):
    vendor_b = follow_ups[FOLLOW_UP_SETS[1][0]]
    drift = {f.subject: f for f in vendor_b.findings if f.kind == "input_drift"}
    assert {"image_mean", "image_p01"} <= set(drift)
    for finding in drift.values():
        test = finding.evidence["test"]
        assert finding.severity == "warning" and test["p_value"] <= test["p_adjusted"] <= 0.05 and test["family_size"] == 9
