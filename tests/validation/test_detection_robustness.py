"""Robustness of a lesion detector to image perturbations, against planted truth: a thresholding
detector on images with planted bright lesions loses CPM under a narrow window (the background is
stretched over its threshold), by exactly what the FROC of the perturbed detections says, and
nothing under mild compression; perturbations that move the anatomy are not applicable;
a condition whose output breaks the contract fails with its reason."""

import numpy as np
import pytest
from scipy import ndimage

from radtrust_engine.detection import DetectionCase, DetectionConfig, DetectionError, checked_lesions, detect, froc, match_cases, matched_case
from radtrust_engine.detection_robustness import PerturbedDetections, detection_robustness_report
from radtrust_engine.perturbations import PERTURBATIONS, perturb_batch, perturbations_for

CONFIG = DetectionConfig(iou_threshold=0.3)
SIDE = 40


def planted_cases(n: int = 24, seed: int = 0) -> list[DetectionCase]:
    """Dim noisy images, each with 0-2 bright 5x5 lesions whose boxes are the ground truth."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        image = np.clip(rng.normal(0.1, 0.05, (SIDE, SIDE)), 0, None).astype(np.float32)
        lesions = []
        for k in range(int(rng.integers(0, 3))):
            x, y = int(rng.integers(2 + 18 * k, 14 + 18 * k)), int(rng.integers(2, SIDE - 8))
            image[y : y + 5, x : x + 5] = 0.9
            lesions.append(([x, y, x + 5, y + 5], "lesion"))
        pixels = image[None, None]
        cases.append(DetectionCase(f"c{i}", f"p{i // 2}", lambda pixels=pixels: pixels, lesions))
    return cases


def threshold_detector(pixels: np.ndarray) -> list[np.ndarray]:
    """Every connected region above 0.5, scored by its mean intensity (the output contract's three arrays)."""
    image = pixels[0, 0]
    regions, n = ndimage.label(image > 0.5)
    boxes, scores = [], []
    for index, found in enumerate(ndimage.find_objects(regions), start=1):
        ys, xs = found
        boxes.append([xs.start, ys.start, xs.stop, ys.stop])
        scores.append(float(np.clip(image[regions == index].mean(), 0, 1)))
    return [np.asarray(boxes, dtype=np.float32).reshape(n, 4), np.asarray(scores, dtype=np.float32), np.zeros(n, dtype=np.int64)]


def collect(forward, cases, sample=None) -> PerturbedDetections:
    ids = frozenset(c.case_id for c in cases) if sample is None else sample
    collected = PerturbedDetections(forward, 1, CONFIG, "CT", 7, ids)
    match_cases(cases, forward, ["lesion"], CONFIG, on_match=collected.observe)
    return collected


def test_a_narrow_window_costs_cpm_by_what_the_froc_of_the_perturbed_detections_says():
    cases = planted_cases()
    report = detection_robustness_report(collect(threshold_detector, cases), n_resamples=300, seed=0, confidence=0.95)
    conditions = {c["condition"]: c for c in report["conditions"]}
    moving = {p.name for p in perturbations_for("CT") if p.moves_anatomy}
    assert moving == {"rotation", "translation"}
    assert {n["perturbation"] for n in report["not_applicable"]} == moving
    assert len(conditions) == 3 * (len(perturbations_for("CT")) - len(moving)) and not report["failed"]
    window = conditions["windowing@3"]["metrics"]["cpm"]
    assert window["change"] < -0.5 and window["ci_low"] <= window["change"] <= window["ci_high"] < 0
    assert conditions["jpeg@1"]["metrics"]["cpm"]["change"] == 0.0  # the lesions stay far above the threshold
    # the same perturbed inputs detected and matched directly, their FROC computed from the definition's code
    direct = []
    for position, case in enumerate(cases):
        pixels = case.read()
        lesions = checked_lesions(case.lesions, ["lesion"], (SIDE, SIDE))
        found = detect(perturb_batch(pixels, "windowing", 3, 7, start=position), threshold_detector, 1, CONFIG)
        direct.append(matched_case(case, found, lesions, CONFIG))
    assert window["value"] == pytest.approx(froc(direct, n_resamples=0).cpm, abs=1e-12)
    assert report["worst_case"]["metrics"]["cpm"]["change"] == min(c["metrics"]["cpm"]["change"] for c in report["conditions"])


def test_only_the_sampled_cases_are_perturbed_and_a_contract_breaking_condition_fails_with_its_reason():
    cases = planted_cases()

    def fragile(pixels: np.ndarray) -> list[np.ndarray]:
        if pixels.min() < 0:  # noise pushes the background below zero: the output then breaks the contract
            return [np.zeros((1, 3), dtype=np.float32), np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.int64)]
        return threshold_detector(pixels)

    sample = frozenset(c.case_id for c in cases[::2])
    report = detection_robustness_report(collect(fragile, cases, sample), n_resamples=100, seed=0, confidence=0.95)
    assert report["n_cases"] == len(sample)
    failed = {f["condition"]: f["error"] for f in report["failed"]}
    assert "gaussian_noise@3" in failed and "[N, 4]" in failed["gaussian_noise@3"]
    assert "gaussian_noise@3" not in {c["condition"] for c in report["conditions"]}
    assert "blur@1" in {c["condition"] for c in report["conditions"]}

    from radtrust_engine.perturbations import PERTURBATIONS
    from validation.task_tables import TaskSection, _robustness

    section = TaskSection("Lesion detection")
    _robustness(section, report)
    (table,) = section.tables
    failed_rows = [row for row in table.rows if row[1] == "failed"]
    assert len(failed_rows) == len(report["failed"]) and not any("@" in row[0] for row in failed_rows)  # in words, not keys
    assert f"{PERTURBATIONS['gaussian_noise'].description}, severity 3" in {row[0] for row in failed_rows}


def test_nothing_sampled_says_why():
    collected = PerturbedDetections(threshold_detector, 1, CONFIG, "MR", 0, frozenset())
    report = detection_robustness_report(collected, n_resamples=10, seed=0, confidence=0.95)
    assert report["error"] and {n["perturbation"] for n in report["not_applicable"]} == {"rotation", "translation"}
    assert all(p.name in PERTURBATIONS for p in perturbations_for("MR"))
    with pytest.raises(DetectionError):
        detect(np.zeros((1, 1, 4, 4), dtype=np.float32), lambda x: [np.zeros((1, 4))], 1, CONFIG)
