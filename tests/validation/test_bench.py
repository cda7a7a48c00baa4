"""The benchmark's building blocks on tiny sizes, and the command end to end (``--quick``).

Timings are never asserted: they depend on the machine. What is asserted is
that each figure measures what it says (same data, same subsets, real files).
"""

from __future__ import annotations

import json
from dataclasses import replace
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from radtrust_demo.bench import validation as bench
from radtrust_engine.images import load_image
from radtrust_engine.loading import read_manifest

pytestmark = pytest.mark.slow  # benchmarks at small size

KEYS = [f for f in bench.FIGURES if f not in bench.HEAVY]  # the heavy ones run only when named (--only)


@pytest.fixture
def bench_var(settings, tmp_path):
    """The command's cache (exported models, written DICOM files) in this test's folder."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def test_quick_command_prints_one_json_object_with_every_figure(bench_var):
    out = StringIO()
    call_command("bench", "validation", "--json", "--quick", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())  # the whole of stdout is one JSON object

    for key in KEYS:
        assert isinstance(result[key], float) and np.isfinite(result[key]), key
        entry = result["figures"][key]
        assert {"value", "reference", "ratio", "unit", "goal", "meets_goal"} <= set(entry)
    assert result["max_abs_diff_vs_sklearn"] <= 1e-9
    details = result["details"]
    pipeline = details["pipeline"]
    assert len(pipeline["bare_images_per_second"]) == len(pipeline["pipeline_images_per_second"]) + 1  # bare around each
    paired = [
        p / ((b0 + b1) / 2)
        for p, b0, b1 in zip(pipeline["pipeline_images_per_second"], pipeline["bare_images_per_second"], pipeline["bare_images_per_second"][1:])
    ]
    assert pipeline["round_ratios_to_mean_of_adjacent_bare"] == pytest.approx(paired)
    assert result["pipeline_vs_bare_ort"] == pytest.approx(float(np.median(paired)))
    assert details["machine"]["cpu_count"] >= 1 and details["machine"]["provider"].endswith("ExecutionProvider")
    assert pipeline["images"] == bench.QUICK.pipeline_images == pipeline["bare_images_per_run"]  # unbounded: as many as the pipeline
    assert set(pipeline["stages_seconds"]) >= {"headers", "inference", "metrics"}
    run = details["run"]
    assert run["images"] == bench.QUICK.run_images and run["threads"] == 2
    assert sum(run["stage_shares"].values()) == pytest.approx(1.0)
    assert details["metrics"]["fairlearn"]["fairlearn_seconds_per_resample"] > 0
    # PSI edges: np.quantile interpolates between order statistics, ours takes the order statistic itself
    assert details["drift"]["ks_statistic_diff"] <= 1e-12 and details["drift"]["psi_diff"] <= 1e-3
    suite = details["suite"]
    assert result["images_read_per_image"] == 1.0 and suite["images_read"] == bench.QUICK.run_images  # robustness, TTA, saliency reuse the tensors
    assert set(suite["stages_seconds"]) >= {"inference", "metrics", *bench.FULL_SUITE}
    assert suite["robustness_conditions"] == 11 * 3 and suite["tta_augmentations"] == 8 and suite["explained_cases"] == 32
    assert suite["saliency_files"] == 2 * 32
    labels = details["labels"]
    passes = labels["forward_passes_by_stage"]
    assert passes["14_labels"] == passes["1_labels"]  # one pass per input whatever the labels
    assert passes["1_labels"]["robustness"] == 33 * bench.QUICK.run_images and passes["1_labels"]["uncertainty"] == 8 * bench.QUICK.run_images
    figure = result["figures"]["forward_passes_14_labels_over_1_label"]
    assert figure["value"] == sum(passes["14_labels"].values()) and figure["reference"] == sum(passes["1_labels"].values())
    assert result["forward_passes_14_labels_over_1_label"] == figure["value"] / figure["reference"] == 1.0
    # the labels share one set of explained cases, as large as one label's
    assert labels["explained_cases"]["1_labels"] == labels["explained_cases"]["14_labels"] == bench.QUICK.label_explain_cases
    assert len(labels["suite_seconds"]["1_labels"]) == 2 and len(labels["suite_seconds"]["14_labels"]) == 1
    assert (bench_var / "bench").is_dir()


def test_only_one_figure_prints_that_figure_and_a_table_without_json(bench_var):
    out = StringIO()
    call_command("bench", "validation", "--quick", "--only", "max_abs_diff_vs_sklearn", stdout=out, stderr=StringIO())
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["figure", "value", "reference", "ratio"]
    assert lines[1].startswith("max_abs_diff_vs_sklearn") and lines[1].endswith("met")
    assert not any(line.startswith(("pipeline", "metrics_vs", "run_2000")) for line in lines)


def test_unknown_figure_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown figure 'speed'"):
        bench.run_benchmarks(tmp_path, only="speed")


def test_synthetic_predictions_keep_patients_whole():
    data = bench.synthetic_predictions(3000, seed=1)
    assert data.y_true.shape == data.y_score.shape == data.patient_id.shape == (3000,)
    _, per_patient = np.unique(data.patient_id, return_counts=True)
    assert per_patient.min() >= 1 and per_patient.max() <= 3
    for values in [data.y_true, *data.attributes.values()]:
        first = {}
        for patient, value in zip(data.patient_id, values):
            assert first.setdefault(patient, value) == value  # fixed per patient
    assert np.unique(data.y_score).size < 1000  # ties, which both implementations must handle
    assert data.groupings[-1] == ("sex", "age_band") and len(data.groupings) == 5


def test_fairlearn_frames_agree_with_our_point_estimates():
    data = bench.synthetic_predictions(1500, seed=2)
    report = bench.our_report(data, n_resamples=0)
    frames = bench.fairlearn_frames(data)
    assert set(frames) == set(data.groupings)
    compared = 0
    for grouping, frame in frames.items():
        assert frame.overall["auroc"] == pytest.approx(report.overall.metrics["auroc"].value, abs=1e-12)
        assert frame.overall["recall"] == pytest.approx(report.overall.metrics["sensitivity"].value, abs=1e-12)
        by_group = frame.by_group
        for group in report.subgroups:
            if group.attributes != grouping or group.suppressed:
                continue
            row = by_group.loc[group.values if len(grouping) > 1 else group.values[0]]
            assert row["auroc"] == pytest.approx(group.metrics["auroc"].value, abs=1e-12)
            assert row["recall"] == pytest.approx(group.metrics["sensitivity"].value, abs=1e-12)
            compared += 1
    assert compared >= 15


def test_sklearn_difference_is_small_for_ours_and_large_for_a_wrong_report():
    data = bench.synthetic_predictions(2000, seed=3)
    report = bench.our_report(data, n_resamples=0)
    ours = bench.sklearn_max_abs_diff(data, report)
    assert ours["max_abs_diff"] <= 1e-9
    assert ours["estimates_compared"] == 7 * (1 + sum(not g.suppressed for g in report.subgroups))

    shuffled = bench.Predictions(data.y_true, np.random.default_rng(0).permutation(data.y_score), data.patient_id, data.attributes)
    wrong = bench.sklearn_max_abs_diff(shuffled, report)
    assert wrong["max_abs_diff"] > 0.05 and wrong["metric"] is not None


def test_metrics_figure_compares_per_resample(tmp_path):
    sizes = bench.Sizes(predictions=1500, n_resamples=20, fairlearn_resamples=1)
    result = bench.bench_metrics(sizes, log=lambda message: None)
    figure = result["fairlearn_figure"]
    timing = result["fairlearn"]
    assert figure["value"] == pytest.approx(timing["ours_seconds"] / 20)
    assert figure["ratio"] == pytest.approx(figure["value"] / figure["reference"])
    assert result["data"]["groupings"] == ["sex", "age_band", "site", "scanner_manufacturer", "sex x age_band"]


def test_dicom_dataset_is_readable_by_the_engine_and_reused(tmp_path):
    folder = tmp_path / "dicom"
    manifest_path = bench.write_dicom_dataset(folder, 7, 40, seed=4)
    written = manifest_path.stat().st_mtime_ns
    manifest = read_manifest(manifest_path, folder, label_columns=[bench.CLASS_NAME])
    assert len(manifest) == 7 and set(manifest.labels[:, 0]) <= {0, 1}
    image = load_image(manifest.absolute_path(0))
    assert image.format == "dicom" and image.array.shape == (40, 40)
    assert 0 <= image.array.min() and image.array.max() <= 4095
    assert image.attributes["sex"] == manifest.attributes["sex"][0]
    assert image.attributes["age"] == manifest.attributes["age"][0]
    assert bench.write_dicom_dataset(folder, 7, 40, seed=4).stat().st_mtime_ns == written


def test_resnet18_has_the_size_of_resnet18():
    net = bench.resnet18()
    assert sum(p.numel() for p in net.parameters()) == 11_177_025  # torchvision's 11,689,512 less a 1000-way head
    assert bench.count_macs(net, (3, 224, 224)) / 1e9 == pytest.approx(1.8136, abs=1e-4)


def test_format_table_marks_missed_goals():
    result = {
        "figures": {
            "pipeline_vs_bare_ort": bench.figure("pipeline_vs_bare_ort", 30.0, 40.0, 0.75, "images/s"),
            "run_2000_seconds": bench.figure("run_2000_seconds", 61.5, None, None, "s"),
        },
        "details": {"machine": {"cpu_count": 2, "device": "CPU", "provider": "CPUExecutionProvider", "onnxruntime": "1"}},
    }
    table = bench.format_table(result)
    assert "0.75" in table and ">= 0.9 NOT met" in table
    assert "61.5" in table and "2 CPUs" in table


def test_bounded_bare_runs_score_their_own_count_around_the_full_pipeline_run(tmp_path):
    sizes = replace(bench.QUICK, bare_images=2 * bench.QUICK.batch_size, pipeline_rounds=2)
    pipeline = bench.bench_pipeline(tmp_path, sizes, log=lambda message: None)
    assert pipeline["images"] == bench.QUICK.pipeline_images and pipeline["bare_images_per_run"] == 2 * bench.QUICK.batch_size
    assert len(pipeline["bare_images_per_second"]) == 3 and len(pipeline["round_ratios_to_mean_of_adjacent_bare"]) == 2


def test_rounds_belong_to_the_foundation_bench_alone(bench_var):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--rounds is for bench foundation only"):
        call_command("bench", "validation", "--quick", "--rounds", "2", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="--rounds must be at least 1"):
        call_command("bench", "foundation", "--quick", "--rounds", "0", stdout=StringIO(), stderr=StringIO())
