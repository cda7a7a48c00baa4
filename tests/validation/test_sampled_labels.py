"""Robustness, uncertainty and explainability of a multi-label model: every label from one forward pass.

The model outputs every label at once, so the sampled analyses run it once per
perturbed input and slice each label's column. For robustness and uncertainty each
label must get exactly what the one-label model made of its head gets; explainability
explains one set of cases shared by the labels, each for the label it was drawn for.
The forward passes must not grow with the labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from radtrust_engine.loading import read_manifest
from radtrust_engine.perturbations import PERTURBATIONS, SEVERITY_LEVELS
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device
from radtrust_engine.uncertainty import AUGMENTATIONS

SIZE = 24
IMAGES = 40
SAMPLED = ("robustness", "uncertainty", "explainability")
CONFIG = SuiteConfig(
    n_resamples=20,
    min_patients=5,
    batch_size=16,
    analyses=SAMPLED,
    sample_max_cases=30,  # fewer than the images: a seeded sample is kept
    explain_cases=4,
    rise_masks=50,
)


def _model(path: Path, labels: int | slice) -> Path:
    """A convolution, ReLU and global average pooling (the backbone, the same in every model) under a
    linear head of 14 logits; ``labels`` picks the head's units (a slice keeps the original units)."""
    rng = np.random.default_rng(0)
    kernel, kernel_bias = rng.normal(size=(4, 1, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    head, head_bias = (3 * rng.normal(size=(4, 14))).astype(np.float32), rng.normal(size=14).astype(np.float32)
    units = labels if isinstance(labels, slice) else slice(0, labels)
    head, head_bias = np.ascontiguousarray(head[:, units]), np.ascontiguousarray(head_bias[units])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "kernel", "kernel_bias"], ["features"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["features"], ["active"]),
            helper.make_node("GlobalAveragePool", ["active"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "head", "head_bias"], ["logits"]),
        ],
        "backbone-and-head",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(head_bias)])],
        [numpy_helper.from_array(a, n) for a, n in ((kernel, "kernel"), (kernel_bias, "kernel_bias"), (head, "head"), (head_bias, "head_bias"))],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """``IMAGES`` noise images with a bright square on some, and 14 label columns each drawn on its own."""
    root = tmp_path_factory.mktemp("sampled-labels")
    rng = np.random.default_rng(1)
    (root / "img").mkdir()
    labels = rng.integers(0, 2, (IMAGES, 14))
    for i in range(IMAGES):
        image = rng.normal(size=(SIZE, SIZE)).astype(np.float32)
        if labels[i, 0]:
            y, x = rng.integers(0, SIZE - 6, 2)
            image[y : y + 6, x : x + 6] += 2
        np.save(root / "img" / f"{i}.npy", image)
    return root, labels


def _evaluate(root: Path, model: Path, labels: np.ndarray, names: list[str], config: SuiteConfig = CONFIG):
    rows = ["image_path,patient_id,sex," + ",".join(names)]
    rows += [f"img/{i}.npy,p{i // 2},{'FM'[i % 2]}," + ",".join(map(str, labels[i])) for i in range(IMAGES)]
    manifest_path = root / f"{model.stem}-{len(names)}.csv"
    manifest_path.write_text("\n".join(rows))
    manifest = read_manifest(manifest_path, root, label_columns=names, class_names=names)
    return evaluate(
        open_session(model, select_device(prefer_gpu=False)),
        manifest,
        task="multilabel" if len(names) > 1 else "binary",
        class_names=names,
        thresholds=dict.fromkeys(names, 0.5),
        preprocessing=Preprocessing.from_spec({}),
        config=config,
        activation="sigmoid",
    )


def test_each_label_of_a_three_label_model_gets_what_its_head_alone_gets(dataset, tmp_path):
    """Every per-label figure (stratified metrics with their bootstrap, calibration, generalisation,
    robustness's paired bootstrap, uncertainty) of a multi-label run equals, to the bit, the run of
    that label's head alone: the labels share the resamples, never each other's numbers."""
    root, labels = dataset
    names = ["effusion", "nodule", "mass"]
    config = SuiteConfig(**{**CONFIG.to_dict(), "analyses": ["calibration", "generalisation", "robustness", "uncertainty"]})
    together = _evaluate(root, _model(tmp_path / "three.onnx", 3), labels[:, :3], names, config)
    assert together.run_report.images_read_per_image == 1.0
    for k, name in enumerate(names):
        alone = _evaluate(root, _model(tmp_path / f"head-{k}.onnx", slice(k, k + 1)), labels[:, k : k + 1], [name], config)
        assert together.report["results"][name] == alone.report["results"][name]
    robustness = together.report["results"]["nodule"]["robustness"]
    assert len(robustness["conditions"]) == 33 and not robustness["failed"]
    calibration = together.report["results"]["nodule"]["calibration"]
    assert "error" not in calibration and calibration["ece"]["ci_low"] is not None


def test_the_labels_share_the_explained_cases_and_each_gets_the_overlays_of_its_own(dataset, tmp_path):
    root, labels = dataset
    names = ["effusion", "nodule", "mass"]
    config = SuiteConfig(**{**CONFIG.to_dict(), "analyses": ["explainability"], "explain_cases": 6})
    together = _evaluate(root, _model(tmp_path / "three.onnx", 3), labels[:, :3], names, config)
    reports = {name: together.report["results"][name]["explainability"] for name in names}
    rows = {name: [case["row"] for case in report["cases"]] for name, report in reports.items()}
    assert [len(r) for r in rows.values()] == [2, 2, 2] and len(set().union(*map(set, rows.values()))) == 6
    assert all(report["n_explained"] == 6 and report["pooled"]["n_cases"] == 6 for report in reports.values())
    for name, report in reports.items():
        expected = {f"saliency/{name}/{method}/row-{row}.png" for method in ("occlusion", "rise") for row in rows[name]}
        assert {overlay["file"] for overlay in report["overlays"]} == expected
    assert set(together.files) == {overlay["file"] for report in reports.values() for overlay in report["overlays"]}


def test_fourteen_labels_cost_the_forward_passes_of_one(dataset, tmp_path):
    root, labels = dataset
    one = _evaluate(root, _model(tmp_path / "one.onnx", 1), labels[:, :1], ["l0"]).report["inference"]
    fourteen = _evaluate(root, _model(tmp_path / "fourteen.onnx", 14), labels, [f"l{k}" for k in range(14)]).report["inference"]
    assert fourteen["forward_passes"] == one["forward_passes"]
    assert fourteen["forward_passes_by_stage"] == one["forward_passes_by_stage"]
    conditions = sum(p.modality == "all" for p in PERTURBATIONS.values()) * len(SEVERITY_LEVELS)
    assert conditions == 33
    # Per explained case: itself, the unoccluded image and 5 x 5 patches (24 px, patch 8, stride 4), the RISE
    # masks, and the 2 x 21 deletion and insertion steps of each random map and of each method's map.
    explained = 1 + 1 + 25 + CONFIG.rise_masks + (3 + 2) * 2 * 21
    assert one["forward_passes_by_stage"] == {
        "inference": IMAGES,
        "robustness": 30 * conditions,
        "uncertainty": 30 * len(AUGMENTATIONS),
        "explainability": CONFIG.explain_cases * explained,
    }
    sampled = 30 * (conditions + len(AUGMENTATIONS)) + CONFIG.explain_cases * explained
    assert conditions + len(AUGMENTATIONS) == 41 and fourteen["forward_passes_per_sampled_case"] == sampled / 30
