"""Segmentation metrics: Dice and IoU per case against hand values and a plain
loop, model outputs to masks, ground-truth masks fitted to the output grid,
and stratified means with patient-level bootstrap CIs and Dice gaps.

No database: the engine is plain Python and NumPy.
"""

import json
import math

import numpy as np
import pytest

from radtrust_engine.images import load_image
from radtrust_engine.segmentation import fit_mask, masks_from_output, overlap_scores, stratified_segmentation


def _loop_scores(pred, truth):
    """Dice and IoU one case and one voxel at a time, written independently."""
    dice, iou = [], []
    for p, t in zip(pred, truth):
        inter = union = size_p = size_t = 0
        for a, b in zip(p.ravel().tolist(), t.ravel().tolist()):
            inter += a and b
            union += a or b
            size_p += a
            size_t += b
        dice.append(2 * inter / (size_p + size_t) if size_p + size_t else math.nan)
        iou.append(inter / union if union else math.nan)
    return np.array(dice), np.array(iou)


# ---------------------------------------------------------------------------
# Per-case overlap
# ---------------------------------------------------------------------------


def test_dice_and_iou_match_hand_computed_values():
    pred = np.zeros((4, 4, 4), dtype=bool)
    truth = np.zeros((4, 4, 4), dtype=bool)
    pred[0, 0, :3] = True  # 3 voxels
    truth[0, 0, 1:] = True  # 3 voxels, 2 shared
    truth[0, 1, 0] = True  # 4 voxels in all
    truth[1, :2, :2] = True  # missed entirely
    pred[2, 3, 3] = True  # a prediction on an empty truth
    # case 3: both empty
    scores = overlap_scores(pred, truth)
    assert scores.dice[0] == pytest.approx(2 * 2 / (3 + 4))
    assert scores.iou[0] == pytest.approx(2 / 5)
    assert scores.dice[1] == 0 and scores.iou[1] == 0
    assert scores.dice[2] == 0 and scores.iou[2] == 0
    assert np.isnan(scores.dice[3]) and np.isnan(scores.iou[3])
    assert scores.truth_size.tolist() == [4, 4, 0, 0]
    assert scores.truth_empty.tolist() == [False, False, True, True]


def test_3d_masks_and_0_1_integer_masks():
    pred = np.zeros((1, 3, 4, 5), dtype=np.uint8)
    truth = np.zeros((1, 3, 4, 5), dtype=np.uint8)
    pred[0, :2, :2, :2] = 1  # 8 voxels
    truth[0, 1:, :2, :2] = 1  # 8 voxels, 4 shared
    scores = overlap_scores(pred, truth)
    assert scores.dice[0] == pytest.approx(0.5) and scores.iou[0] == pytest.approx(4 / 12)
    assert scores.truth_size[0] == 8


@pytest.mark.parametrize("shape", [(30, 9, 11), (12, 5, 6, 7)])
def test_dice_and_iou_match_a_plain_loop_on_random_masks(shape):
    rng = np.random.default_rng(len(shape))
    density = rng.random(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)) * 0.4
    pred = rng.random(shape) < density
    truth = rng.random(shape) < density
    pred[:3] = False
    truth[:2] = False  # cases 0-1 empty in both, case 2 only in the prediction
    scores = overlap_scores(pred, truth)
    dice, iou = _loop_scores(pred, truth)
    np.testing.assert_allclose(scores.dice, dice, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores.iou, iou, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores.iou, scores.dice / (2 - scores.dice), atol=1e-12)


def test_cases_empty_in_both_masks_are_left_out_of_the_means():
    pred = np.zeros((4, 3, 3), dtype=bool)
    truth = np.zeros((4, 3, 3), dtype=bool)
    pred[0, 0, 0] = truth[0, 0, 0] = True  # Dice 1
    truth[1, 1, 1] = True  # missed: Dice 0
    scores = overlap_scores(pred, truth)  # cases 2 and 3: empty in both
    assert scores.n_empty_both == 2 and scores.n_cases == 4
    assert scores.mean_dice == pytest.approx(0.5)  # not (1 + 0 + 1 + 1) / 4
    assert scores.mean_iou == pytest.approx(0.5)
    d = json.loads(json.dumps(scores.to_dict()))
    assert d["dice"] == [1.0, 0.0, None, None]
    assert d["n_truth_empty"] == 2 and d["truth_size"] == [1, 1, 0, 0]
    all_empty = overlap_scores(np.zeros((2, 3), bool), np.zeros((2, 3), bool))
    assert all_empty.mean_dice is None and all_empty.n_empty_both == 2


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match=r"pred has shape \(2, 3, 3\) but truth has shape \(2, 3, 4\)"):
        overlap_scores(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError, match="masks_from_output"):
        overlap_scores(np.full((2, 3, 3), 0.7), np.zeros((2, 3, 3), bool))
    with pytest.raises(ValueError, match=r"\(N, \.\.\.\)"):
        overlap_scores(np.zeros(3, bool), np.zeros(3, bool))


# ---------------------------------------------------------------------------
# Model outputs to masks
# ---------------------------------------------------------------------------


def test_sigmoid_output_thresholds_the_probability():
    logits = np.array([-3.0, -0.1, 0.0, 0.5, 1.2, 1.5], dtype=np.float32).reshape(1, 1, 2, 3)
    at_half = masks_from_output(logits, 0.5, activation="sigmoid")
    assert at_half.shape == (1, 2, 3) and at_half.dtype == bool
    assert at_half.ravel().tolist() == [False, False, True, True, True, True]
    # sigmoid(1.2) = 0.769, sigmoid(1.5) = 0.818
    at_08 = masks_from_output(logits, 0.8, activation="sigmoid")
    assert at_08.ravel().tolist() == [False, False, False, False, False, True]
    huge = np.array([-1e4, 1e4], dtype=np.float32).reshape(1, 1, 1, 2)  # no overflow
    assert masks_from_output(huge, 0.5, activation="sigmoid").ravel().tolist() == [False, True]


def test_none_output_is_read_as_probabilities():
    prob = np.array([0.1, 0.3, 0.3, 0.9], dtype=np.float32).reshape(1, 1, 1, 1, 4)  # 3D
    mask = masks_from_output(prob, 0.3, activation="none")
    assert mask.shape == (1, 1, 1, 4)
    assert mask.ravel().tolist() == [False, True, True, True]


def test_multichannel_output_takes_argmax_with_channel_0_as_background():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5))
    expected = logits.argmax(axis=1) != 0
    assert np.array_equal(masks_from_output(logits, 0.5, activation="softmax"), expected)
    e = np.exp(logits)
    prob = e / e.sum(axis=1, keepdims=True)  # softmaxed in the graph
    assert np.array_equal(masks_from_output(prob, 0.5, activation="none"), expected)
    two = np.zeros((1, 2, 1, 2))
    two[0, 1, 0, 1] = 1.0
    assert masks_from_output(two, 0.5, activation="softmax").ravel().tolist() == [False, True]


def test_outputs_that_cannot_be_interpreted_are_refused():
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8\).*\(N, C, H, W\)"):
        masks_from_output(np.zeros((2, 8, 8)), 0.5, activation="sigmoid")
    with pytest.raises(ValueError, match="softmax over one channel"):
        masks_from_output(np.zeros((2, 1, 8, 8)), 0.5, activation="softmax")
    with pytest.raises(ValueError, match="3 channels"):
        masks_from_output(np.zeros((2, 3, 8, 8)), 0.5, activation="sigmoid")
    with pytest.raises(ValueError, match="activation must be one of"):
        masks_from_output(np.zeros((2, 1, 8, 8)), 0.5, activation="relu")
    with pytest.raises(ValueError, match="threshold"):
        masks_from_output(np.zeros((2, 1, 8, 8)), 1.0, activation="none")
    with pytest.raises(ValueError, match="NaN"):
        masks_from_output(np.full((1, 1, 2, 2), np.nan), 0.5, activation="sigmoid")


# ---------------------------------------------------------------------------
# Ground-truth masks on the output grid
# ---------------------------------------------------------------------------


def test_fit_mask_binarises_and_resizes_by_nearest_neighbour_with_corners_aligned():
    mask = np.array([[0.0, 1.0], [2.0, 0.4]])  # 0.4 is background, 2 (a label) foreground
    up = fit_mask(mask, (4, 4))
    assert up.dtype == bool
    assert up.astype(int).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    # Downsampling picks the rows and columns at the aligned corners' positions.
    grid = np.zeros((5, 5))
    grid[::2, ::2] = 1  # rows and columns 0, 2, 4
    assert fit_mask(grid, (3, 3)).all()
    # Up then down returns the original grid.
    rng = np.random.default_rng(1)
    original = rng.random((4, 6, 5)) < 0.5
    assert np.array_equal(fit_mask(fit_mask(original, (7, 11, 9)), (4, 6, 5)), original)
    assert np.array_equal(fit_mask(original, (4, 6, 5)), original)


def test_fit_mask_squeezes_a_nifti_2d_mask_and_a_channel_first_npy(tmp_path):
    import nibabel

    mask = np.zeros((6, 8), dtype=np.float32)
    mask[1:4, 2:6] = 1
    nibabel.save(nibabel.Nifti1Image(mask[:, :, None], affine=np.eye(4)), tmp_path / "m.nii.gz")
    np.save(tmp_path / "m.npy", mask[None])
    from_nifti = load_image(tmp_path / "m.nii.gz").array
    assert from_nifti.shape == (6, 8)  # the loader drops the trailing singleton axis of a 2D NIfTI
    assert np.array_equal(fit_mask(from_nifti, (6, 8)), mask > 0.5)
    from_npy = load_image(tmp_path / "m.npy").array
    assert np.array_equal(fit_mask(from_npy, (12, 15)), fit_mask(mask, (12, 15)))
    # End to end: a fitted mask scored against itself gives Dice 1.
    fitted = fit_mask(from_nifti, (12, 15))[None]
    assert overlap_scores(fitted, fitted).dice.tolist() == [1.0]


def test_fit_mask_refuses_ranks_that_cannot_match():
    with pytest.raises(ValueError, match=r"\(6, 8, 3\).*\(6, 8\)"):
        fit_mask(np.zeros((6, 8, 3)), (6, 8))
    with pytest.raises(ValueError, match=r"\(6, 8\).*\(4, 6, 8\)"):
        fit_mask(np.zeros((6, 8)), (4, 6, 8))
    with pytest.raises(ValueError, match="positive"):
        fit_mask(np.zeros((6, 8)), (0, 8))


# ---------------------------------------------------------------------------
# Stratified means with bootstrap CIs
# ---------------------------------------------------------------------------


def _cohort(seed: int, n_patients: int = 400, max_cases: int = 3):
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), rng.integers(1, max_cases + 1, n_patients))
    n = pid.size
    level = rng.beta(8, 2, n_patients)[pid]
    dice = rng.beta(20 * level, 20 * (1 - level))
    dice[rng.random(n) < 0.05] = np.nan  # empty in both masks
    iou = dice / (2 - dice)
    sex = np.array(["F", "M"])[rng.integers(0, 2, n_patients)][pid]
    site = np.array(["A", "B", "C"])[rng.integers(0, 3, n_patients)][pid]
    return dice, iou, pid, {"sex": sex, "site": site}


def test_subgroup_means_equal_numpy_means_over_defined_cases():
    dice, iou, pid, attrs = _cohort(1)
    report = stratified_segmentation(dice, iou, pid, attrs, [("sex", "site")], n_resamples=50)
    np.testing.assert_allclose(report.overall.metrics["dice"].value, np.nanmean(dice), atol=1e-12)
    for group in report.subgroups:
        mask = np.ones(dice.size, dtype=bool)
        for a, v in zip(group.attributes, group.values):
            mask &= attrs[a] == v
        assert group.n_cases == mask.sum()
        assert group.n_patients == np.unique(pid[mask]).size
        assert group.n_positive == np.isfinite(dice[mask]).sum()
        for name, values in (("dice", dice), ("iou", iou)):
            m = group.metrics[name]
            assert m.value == pytest.approx(np.nanmean(values[mask]), abs=1e-12)
            assert m.ci_low <= m.value <= m.ci_high and m.n_valid == 50
    assert len([g for g in report.subgroups if g.attributes == ("sex", "site")]) == 6
    assert [g.kind for g in report.gaps] == ["dice_gap"] * 3


def test_small_and_unknown_subgroups_are_listed_as_suppressed():
    dice, iou, pid, attrs = _cohort(2)
    site = attrs["site"].astype(object)
    site[pid < 8] = "tiny"  # eight patients
    site[pid == 399] = None  # one patient with no site: with "tiny", as many as the minimum
    undefined = pid >= 390
    site[undefined & (pid < 399)] = "empty"  # nine patients, no defined Dice ...
    dice[undefined], iou[undefined] = np.nan, np.nan
    report = stratified_segmentation(dice, iou, pid, {"site": site}, n_resamples=50, min_patients=9)
    for small in (report.subgroup(("site",), ("tiny",)), report.subgroup(("site",), ("unknown",))):
        assert small.suppressed and small.reason == "too_few_patients" and small.metrics is None
        assert small.n_patients is small.n_cases is small.n_positive is None  # no count to subtract
    empty = report.subgroup(("site",), ("empty",))  # ... shown, with undefined means
    assert not empty.suppressed and empty.n_positive == 0
    assert empty.metrics["dice"].value is None and empty.metrics["dice"].n_valid == 0
    gap = report.gap(("site",))
    assert gap.n_groups_compared == 3
    assert {gap.group_high, gap.group_low} <= {("A",), ("B",), ("C",)}
    assert report.overall.n_cases == dice.size  # nothing dropped


def test_same_seed_gives_identical_cis_whatever_the_chunk_size():
    dice, iou, pid, attrs = _cohort(3)
    kw = {"n_resamples": 100, "intersections": [("sex", "site")]}
    a = stratified_segmentation(dice, iou, pid, attrs, seed=7, chunk_size=64, **kw).to_dict()
    b = stratified_segmentation(dice, iou, pid, attrs, seed=7, chunk_size=13, **kw).to_dict()
    c = stratified_segmentation(dice, iou, pid, attrs, seed=8, **kw).to_dict()
    assert a == b
    assert a["overall"]["metrics"]["dice"] != c["overall"]["metrics"]["dice"]
    assert set(a) == {"overall", "subgroups", "gaps", "n_resamples", "seed", "confidence", "min_patients"}
    assert json.loads(json.dumps(a)) == a  # plain JSON, no numpy types


def test_bootstrap_moves_a_patients_cases_together():
    # Duplicating every case within its patient leaves each resample's means
    # unchanged when patients are resampled, so the CIs are identical.
    dice, iou, pid, attrs = _cohort(4, max_cases=1)
    dup = lambda a: np.repeat(a, 2)  # noqa: E731
    once = stratified_segmentation(dice, iou, pid, attrs, n_resamples=200, seed=3).overall
    twice = stratified_segmentation(dup(dice), dup(iou), dup(pid), {k: dup(v) for k, v in attrs.items()}, n_resamples=200, seed=3).overall
    for name in ("dice", "iou"):
        a, b = once.metrics[name], twice.metrics[name]
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12)
    naive = stratified_segmentation(dup(dice), dup(iou), np.arange(2 * dice.size), n_resamples=200, seed=3).overall.metrics["dice"]
    width = lambda m: m.ci_high - m.ci_low  # noqa: E731
    assert width(naive) < 0.85 * width(twice.metrics["dice"])


def test_percentile_ci_covers_the_true_mean_dice_about_95_percent_of_the_time():
    # Patient level ~ Beta(8, 2); each of a patient's 1-3 cases ~ Beta with that
    # mean, so cases of a patient are correlated and the true mean Dice is 0.8.
    # (Measured on 2000 datasets: 0.94; a patient-clustered normal interval 0.95.)
    rng = np.random.default_rng(2024)
    covered = 0
    n_datasets = 400
    for i in range(n_datasets):
        pid = np.repeat(np.arange(150), rng.integers(1, 4, 150))
        level = rng.beta(8, 2, 150)[pid]
        dice = rng.beta(20 * level, 20 * (1 - level))
        m = stratified_segmentation(dice, dice / (2 - dice), pid, n_resamples=200, seed=i).overall.metrics["dice"]
        covered += m.ci_low <= 0.8 <= m.ci_high
    assert 0.90 <= covered / n_datasets <= 0.99


def test_planted_lower_dice_at_one_site_is_the_dice_gap():
    dice, iou, pid, attrs = _cohort(5, n_patients=1500)
    at_c = attrs["site"] == "C"
    dice = np.where(at_c, dice * 0.85, dice)
    iou = dice / (2 - dice)
    report = stratified_segmentation(dice, iou, pid, attrs, [("sex", "site")], n_resamples=300, seed=0)
    gap = report.gap(("site",))
    assert gap.kind == "dice_gap" and gap.group_low == ("C",)
    by_site = {g.values: g.metrics["dice"].value for g in report.subgroups if g.attributes == ("site",)}
    assert gap.value == pytest.approx(by_site[gap.group_high] - by_site[("C",)], abs=1e-12)
    assert 0 < gap.ci_low <= gap.value <= gap.ci_high
    by_sex = report.gap(("sex",))  # no planted effect by sex: no pair differs
    assert by_sex.ci_low == 0 < by_sex.ci_high and not by_sex.significant
    assert report.gap(("sex", "site")).group_low[1] == "C"
    assert report.to_dict()["gaps"][1]["group_low"] == ["C"]


def test_a_thousand_resamples_of_20000_cases_are_all_valid():
    dice, iou, pid, attrs = _cohort(6, n_patients=10_000)
    rng = np.random.default_rng(6)
    attrs["age"] = np.array(["<18", "18-39", "40-64", "65+"])[rng.integers(0, 4, 10_000)][pid]
    report = stratified_segmentation(dice, iou, pid, attrs, [("sex", "site")], n_resamples=1000)
    assert dice.size > 15_000 and report.overall.metrics["dice"].n_valid == 1000


def test_bad_scores_are_refused():
    dice = np.array([0.5, np.nan, 0.9])
    pid = np.arange(3)
    with pytest.raises(ValueError, match="same cases"):
        stratified_segmentation(dice, np.array([0.3, 0.1, 0.8]), pid)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stratified_segmentation(np.array([0.5, 1.2, 0.9]), np.array([0.3, 0.5, 0.8]), pid)
    with pytest.raises(ValueError, match="patient_id"):
        stratified_segmentation(dice, dice, np.arange(4))
    with pytest.raises(ValueError, match="intersection"):
        stratified_segmentation(dice, dice, pid, {"sex": ["F", "M", "F"]}, [("sex", "site")])
