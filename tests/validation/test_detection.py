"""Lesion detection: the output contract, suppression, matching and FROC against a direct count."""

import json

import numpy as np
import pytest

from radtrust_engine.detection import (
    FP_RATES,
    DetectionConfig,
    DetectionError,
    Detections,
    Lesions,
    MatchedCase,
    checked_lesions,
    checked_output,
    detection_report,
    froc,
    ground_truth_from_coco,
    ground_truth_from_csv,
    iou_matrix,
    match,
    nms,
)


def reference_sensitivity(cases, rate: float) -> float:
    """From the definition: try every score threshold, keep those with FP/image <= rate, take the best."""
    scores = np.unique(np.concatenate([c.scores for c in cases] + [np.array([np.inf])]))
    best = 0.0
    lesions = sum(c.n_lesions for c in cases)
    for t in scores:
        fp = sum(int(np.sum((c.scores >= t) & (c.lesion_of < 0))) for c in cases)
        found = sum(len(set(c.lesion_of[(c.scores >= t) & (c.lesion_of >= 0)].tolist())) for c in cases)
        if fp / len(cases) <= rate:
            best = max(best, found / lesions)
    return best


def synthetic_cases(n: int, seed: int = 0) -> list[MatchedCase]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        n_lesions = int(rng.integers(0, 4))
        n_fp = int(rng.poisson(3))
        found = rng.random(n_lesions) < 0.8
        lesion_of = np.r_[np.flatnonzero(found), np.full(n_fp, -1)]
        scores = np.r_[rng.uniform(0.3, 1.0, found.sum()), rng.uniform(0.0, 0.8, n_fp)].round(2)  # ties on purpose
        sizes = rng.uniform(2, 30, n_lesions)
        cases.append(MatchedCase(f"c{i}", f"p{i // 2}", scores, lesion_of.astype(np.int64), n_lesions, sizes, {"sex": "FM"[i % 2]}))
    return cases


def test_froc_matches_a_direct_count_at_every_rate():
    cases = synthetic_cases(60)
    result = froc(cases, n_resamples=200)
    for rate, value in zip(FP_RATES, result.sensitivity, strict=True):
        assert abs(value - reference_sensitivity(cases, rate)) <= 1e-12
    assert result.cpm == pytest.approx(np.mean([reference_sensitivity(cases, r) for r in FP_RATES]), abs=1e-12)
    assert all(lo <= v <= hi for lo, v, hi in zip(result.low, result.sensitivity, result.high, strict=True))
    assert result.cpm_low < result.cpm < result.cpm_high
    assert result.curve["sensitivity"][0] == 0.0


def test_size_strata_count_only_their_lesions_and_subgroups_their_images():
    cases = synthetic_cases(80, seed=1)
    report = detection_report(cases, attributes=["sex"], size_edges=(0, 10, float("inf")), n_resamples=50, min_patients=5)
    small, large = report["size_strata"]
    assert small["n_lesions"] + large["n_lesions"] == report["overall"]["n_lesions"]
    assert small["size"] == "0 to 10" and large["size"] == "10 and above"
    assert {(g["attribute"], g["value"]) for g in report["subgroups"]} == {("sex", "F"), ("sex", "M")}
    assert sum(g["n_cases"] for g in report["subgroups"]) == 80


def test_matching_is_greedy_by_score_and_finds_each_lesion_once():
    lesions = Lesions(np.array([[10, 10, 20, 20], [40, 40, 50, 50]], float), np.array([0, 0]))
    detections = Detections(
        np.array([[11, 11, 21, 21], [10, 10, 20, 20], [41, 41, 51, 51], [70, 70, 80, 80]], float),
        np.array([0.9, 0.8, 0.7, 0.6]),
        np.array([0, 0, 0, 0]),
    )
    config = DetectionConfig(iou_threshold=0.3)
    assert match(detections, lesions, config).tolist() == [0, -1, 1, -1]  # the second hit on lesion 0 is a false positive
    by_distance = match(detections, lesions, DetectionConfig(match_by="distance", max_distance=2.0))
    assert by_distance.tolist() == [0, -1, 1, -1]
    other_class = Detections(detections.boxes, detections.scores, np.array([1, 1, 1, 1]))
    assert (match(other_class, lesions, config) == -1).all()


def test_iou_in_3d_and_nms_per_class():
    a = np.array([[0, 0, 0, 2, 2, 2]], float)
    b = np.array([[1, 0, 0, 3, 2, 2]], float)
    assert iou_matrix(a, b)[0, 0] == pytest.approx(4 / 12)
    dets = Detections(
        np.array([[0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], float), np.array([0.9, 0.8, 0.7, 0.5]), np.array([0, 0, 1, 0])
    )
    kept = nms(dets, DetectionConfig(nms_iou=0.5))
    assert kept.scores.tolist() == [0.9, 0.7, 0.5]
    assert nms(dets, DetectionConfig(nms_iou=0.5, max_detections=2)).scores.tolist() == [0.9, 0.7]


@pytest.mark.parametrize(
    ("boxes", "scores", "labels", "reason"),
    [
        (np.zeros((2, 5)), np.zeros(2), np.zeros(2), "contract is [N, 4]"),
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2), "scores of shape [3]"),
        (np.array([[0, 0, 5, 5.0]]), np.array([np.nan]), np.zeros(1), "finite"),
        (np.array([[0, 0, 5, 5.0]]), np.array([0.5]), np.array([3]), "label outside 0..1"),
        (np.array([[0, 0, 90, 5.0]]), np.array([0.5]), np.array([0]), "outside the image"),
        (np.array([[5, 0, 0, 5.0]]), np.array([0.5]), np.array([0]), "end before its start"),
    ],
)
def test_contract_breaking_outputs_are_refused_with_the_reason(boxes, scores, labels, reason):
    with pytest.raises(DetectionError, match=reason.replace("[", r"\[").replace(".", r"\.")):
        checked_output(boxes, scores, labels, n_classes=2, shape=(64, 64))


def test_a_batch_axis_and_half_pixel_overshoot_are_accepted():
    out = checked_output(np.array([[[0, -0.3, 64.4, 10]]]), np.array([[0.7]]), np.array([[1]]), n_classes=2, shape=(64, 64))
    assert out.boxes.tolist() == [[0, 0, 64, 10]]
    assert out.labels.tolist() == [1]


def test_ground_truth_from_csv_points_and_boxes_and_coco(tmp_path):
    (tmp_path / "boxes.csv").write_text("case_id,label,x1,y1,x2,y2\na,nodule,1,2,5,6\nb,nodule,,,,\n")
    (tmp_path / "points.csv").write_text("case_id,label,x,y,z,radius\nv1,nodule,10,10,5,3\n")
    boxes = ground_truth_from_csv(tmp_path / "boxes.csv", ["nodule"])
    assert boxes == {"a": [([1.0, 2.0, 5.0, 6.0], "nodule")], "b": []}
    points = ground_truth_from_csv(tmp_path / "points.csv", ["nodule"], dims=3)
    assert points["v1"][0][0] == [7.0, 7.0, 2.0, 13.0, 13.0, 8.0]
    coco = {
        "images": [{"id": 1, "file_name": "x.png"}, {"id": 2, "file_name": "y.png"}],
        "annotations": [{"image_id": 1, "bbox": [10, 10, 5, 4], "category_id": 7}],
        "categories": [{"id": 7, "name": "nodule"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    assert ground_truth_from_coco(tmp_path / "gt.json", ["nodule"]) == {"x.png": [([10.0, 10.0, 15.0, 14.0], "nodule")], "y.png": []}
    (tmp_path / "bad.csv").write_text("case_id,label,x1,y1,x2,y2\na,mass,1,2,5,6\n")
    with pytest.raises(DetectionError, match="'mass' is not among"):
        ground_truth_from_csv(tmp_path / "bad.csv", ["nodule"])


def test_ground_truth_outside_the_image_is_refused():
    with pytest.raises(DetectionError, match="outside the image"):
        checked_lesions([([50, 50, 70, 70], "nodule")], ["nodule"], (64, 64))
    assert checked_lesions([], ["nodule"], (64, 64, 10)).boxes.shape == (0, 6)


def test_a_model_over_cases_is_matched_and_broken_cases_skipped():
    from radtrust_engine.detection import DetectionCase, evaluate_detection

    def forward(pixels):  # a "model" that boxes every bright pixel block it finds, by its mean
        ys, xs = np.nonzero(pixels[0, 0] > 0.5)
        if not len(xs):
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float)
        return box, np.array([0.9]), np.array([0])

    def image(lesion):
        def read():
            array = np.zeros((1, 1, 32, 48), np.float32)
            if lesion:
                x1, y1, x2, y2 = lesion
                array[0, 0, y1:y2, x1:x2] = 1.0
            return array

        return read

    cases = [DetectionCase(f"c{i}", f"p{i}", image((10, 5, 20, 12)), [((10, 5, 20, 12), "nodule")], {"sex": "FM"[i % 2]}) for i in range(12)]
    cases += [DetectionCase(f"e{i}", f"q{i}", image(None), []) for i in range(4)]  # no lesion, no detection
    cases.append(DetectionCase("bad", "x", image(None), [((40, 5, 60, 12), "nodule")]))  # beyond the 48-pixel width
    report = evaluate_detection(cases, forward, ["nodule"], DetectionConfig(), attributes=["sex"], n_resamples=50, min_patients=3)
    assert report["overall"]["sensitivity"] == [1.0] * 7
    assert report["overall"]["n_lesions"] == 12 and report["overall"]["n_cases"] == 16
    assert report["skipped"] == [{"case_id": "bad", "reason": "ground-truth box [40.0, 5.0, 60.0, 12.0] lies outside the image (48 x 32)"}]
    with pytest.raises(DetectionError, match="no case could be evaluated"):
        evaluate_detection(cases[-1:], forward, ["nodule"], DetectionConfig())


def test_volumes_go_through_the_same_matcher_in_3d_by_distance_in_mm():
    from radtrust_engine.detection import DetectionCase, evaluate_detection

    def forward(pixels):  # one detection 2 voxels off in x (1.5 mm at 0.75 mm voxels), one far false positive
        return np.array([[12, 10, 4, 20, 18, 8], [0, 0, 0, 4, 4, 2]], float), np.array([0.8, 0.4]), np.array([0, 0])

    def read():
        return np.zeros((1, 1, 10, 24, 24), np.float32)

    cases = [DetectionCase(f"v{i}", f"p{i}", read, [((10, 10, 4, 18, 18, 8), "nodule")], spacing=(0.75, 0.75, 2.5)) for i in range(4)]
    near = evaluate_detection(cases, forward, ["nodule"], DetectionConfig(match_by="distance", max_distance=2.0), n_resamples=20)
    assert near["overall"]["sensitivity"] == [1.0] * 7  # found at 0 FP per volume; the false positive scores lower
    assert near["overall"]["curve"]["fp_per_image"][-1] == 1.0
    far = evaluate_detection(cases, forward, ["nodule"], DetectionConfig(match_by="distance", max_distance=1.0), n_resamples=20)
    assert far["overall"]["sensitivity"] == [0.0] * 7
