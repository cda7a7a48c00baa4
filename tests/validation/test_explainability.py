"""Saliency (occlusion, RISE), deletion/insertion faithfulness against a random baseline, and the overlay."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from radtrust_engine.explainability import (
    ExplainabilityError,
    ExplainSettings,
    deletion_insertion,
    explain_cases,
    faithfulness_verdict,
    min_cases_to_judge,
    occlusion_saliency,
    overlay_png,
    random_saliency,
    rise_saliency,
    select_cases,
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _blob_images(n: int, size: int = 32, seed: int = 0, radius: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images, half of them with a bright gaussian blob at a random position."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0, 0.1, (n, 1, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    centres = rng.integers(6, size - 6, (n, 2))
    for i in np.flatnonzero(y):
        images[i, 0] += np.exp(-((yy - centres[i, 0]) ** 2 + (xx - centres[i, 1]) ** 2) / (2 * radius**2))
    return images, y, centres


def lesion_model(batch: np.ndarray) -> np.ndarray:
    """Looks at the lesion: logistic of the maximum of the smoothed image."""
    smoothed = gaussian_filter(batch[:, 0], sigma=(0, 1.5, 1.5))
    return _sigmoid(12 * (smoothed.reshape(len(batch), -1).max(axis=1) - 0.35))


def mean_model(batch: np.ndarray) -> np.ndarray:
    """Ignores the lesion: every pixel weighs the same in the mean intensity."""
    return _sigmoid(8 * batch.reshape(len(batch), -1).mean(axis=1))


def _report(model, images, y, **kwargs):
    settings = ExplainSettings(**({"n_cases": 16, "rise_masks": 200, "n_resamples": 500} | kwargs))
    paths = [f"cases/{i:03d}.png" for i in range(len(images))]
    return explain_cases(model, images, y, list(range(len(images))), paths, settings).report(0)


# ---------------------------------------------------------------------------
# Saliency
# ---------------------------------------------------------------------------


def test_occlusion_equals_a_direct_patch_loop_on_a_non_square_image():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(1, 10, 13)).astype(np.float32)
    weights = rng.normal(size=(10, 13))
    predict = lambda b: np.tanh((b[:, 0] * weights).sum(axis=(1, 2)))  # noqa: E731
    (got,) = occlusion_saliency(predict, image, patch=4, stride=3, batch_size=5)

    base = predict(image[None])[0]
    total, covered = np.zeros((10, 13)), np.zeros((10, 13))
    for y in (0, 3, 6):  # the last origin sits flush with the bottom edge
        for x in (0, 3, 6, 9):
            occluded = image.copy()
            occluded[:, y : y + 4, x : x + 4] = image.mean()
            total[y : y + 4, x : x + 4] += base - predict(occluded[None])[0]
            covered[y : y + 4, x : x + 4] += 1
    assert covered.min() == 1
    np.testing.assert_allclose(got, total / covered, atol=1e-6)


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_saliency_peaks_inside_the_lesion(method):
    images, _, centres = _blob_images(2, size=32, seed=5)
    image, centre = images[1], centres[1]  # the second image has the blob
    if method == "occlusion":
        (saliency,) = occlusion_saliency(lesion_model, image)
    else:
        (saliency,) = rise_saliency(lesion_model, image, n_masks=400, seed=0)
    assert saliency.shape == (32, 32)
    peak = np.unravel_index(np.argmax(saliency), saliency.shape)
    assert np.hypot(*(np.asarray(peak) - centre)) <= 6  # inside the visible blob (2 sigma)
    assert saliency[tuple(centre)] >= 0.9 * saliency.max()  # occlusion's maximum is a stride-wide plateau
    yy, xx = np.mgrid[:32, :32]
    distance = np.hypot(yy - centre[0], xx - centre[1])
    assert saliency[distance <= 3].mean() > saliency[distance > 14].max()  # RISE maps sit on a baseline of about E[P]


def test_rise_is_reproducible_from_its_seed_and_independent_of_batch_size():
    images, _, _ = _blob_images(2, size=32, seed=1)
    first = rise_saliency(lesion_model, images[1], n_masks=100, seed=7, batch_size=64)
    np.testing.assert_array_equal(first, rise_saliency(lesion_model, images[1], n_masks=100, seed=7, batch_size=64))
    np.testing.assert_allclose(first, rise_saliency(lesion_model, images[1], n_masks=100, seed=7, batch_size=9), atol=1e-12)
    assert not np.allclose(first, rise_saliency(lesion_model, images[1], n_masks=100, seed=8))


def test_rise_normalisation_gives_a_constant_model_its_own_value():
    """sum_i P * mask_i / (n * p) with P = c is c times the mean mask over p, so about c everywhere."""
    image = np.zeros((1, 32, 32), dtype=np.float32)
    (saliency,) = rise_saliency(lambda b: np.full(len(b), 0.8), image, n_masks=2000, seed=0)
    assert saliency.mean() == pytest.approx(0.8, abs=0.02)
    assert np.abs(saliency - 0.8).max() < 0.1


def test_random_saliency_is_seeded_and_smooth():
    first = random_saliency((64, 48), seed=4)
    np.testing.assert_array_equal(first, random_saliency((64, 48), seed=4))
    assert not np.allclose(first, random_saliency((64, 48), seed=5))
    neighbour_correlation = np.corrcoef(first[:, :-1].ravel(), first[:, 1:].ravel())[0, 1]
    assert first.shape == (64, 48) and neighbour_correlation > 0.8  # white noise would give about 0


# ---------------------------------------------------------------------------
# Deletion and insertion
# ---------------------------------------------------------------------------


def test_deletion_insertion_areas_match_hand_computed_curves():
    """8 x 8 noise image, 16 steps of 4 pixels. A model reading the fraction of original pixels has
    linear curves (area 1/2); one reading 8 'lesion' pixels drops (or rises) within 2 steps when they
    come first, area 0.5 * 8/64, and only in the last 2 steps when they come last."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 1, 8, 8)).astype(np.float32)
    lesion = np.zeros((8, 8), dtype=bool)
    lesion[2:4, 1:5] = True

    def original_fraction(batch, where=np.ones((8, 8), dtype=bool)):
        return (batch[:, 0] == image[0, 0])[:, where].mean(axis=1)

    def lesion_fraction(batch):
        return original_fraction(batch, lesion)

    lesion_first = (lesion + rng.uniform(0, 0.5, (8, 8)))[None]
    deletion, insertion = deletion_insertion(original_fraction, image, lesion_first, steps=16)
    np.testing.assert_allclose([deletion[0, 0], insertion[0, 0]], [0.5, 0.5], atol=1e-12)
    deletion, insertion = deletion_insertion(lesion_fraction, image, lesion_first, steps=16, batch_size=5)
    np.testing.assert_allclose([deletion[0, 0], insertion[0, 0]], [0.0625, 0.9375], atol=1e-12)
    deletion, insertion = deletion_insertion(lesion_fraction, image, -lesion_first, steps=16)
    np.testing.assert_allclose([deletion[0, 0], insertion[0, 0]], [0.9375, 0.0625], atol=1e-12)


def test_deletion_insertion_scores_cases_independently_of_batching():
    images, _, _ = _blob_images(6, size=32, seed=2)
    maps = np.stack([random_saliency((32, 32), seed=i) for i in range(6)])
    together = deletion_insertion(lesion_model, images, maps, steps=10, batch_size=64)
    one_by_one = [deletion_insertion(lesion_model, images[i : i + 1], maps[i : i + 1], steps=10, batch_size=7) for i in range(6)]
    np.testing.assert_allclose(together[0], np.concatenate([d[0] for d in one_by_one]), atol=1e-12)
    np.testing.assert_allclose(together[1], np.concatenate([d[1] for d in one_by_one]), atol=1e-12)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def test_a_model_that_looks_at_the_lesion_beats_random():
    images, y, _ = _blob_images(40, seed=0)
    report = _report(lesion_model, images, y).report
    random_deletion = report["random_baseline"]["deletion_auc"]
    random_insertion = report["random_baseline"]["insertion_auc"]
    for method in ("occlusion", "rise"):
        entry = report["methods"][method]
        assert entry["verdict"] == "beats random"
        assert entry["deletion_auc"] < random_deletion - 0.1
        assert entry["insertion_auc"] > random_insertion + 0.05
        assert entry["deletion_difference"]["ci_high"] < 0 < entry["insertion_difference"]["ci_low"]
        assert entry["deletion_difference"]["value"] == pytest.approx(entry["deletion_auc"] - random_deletion)


def test_a_model_that_ignores_the_lesion_is_not_distinguishable_from_random():
    images, y, _ = _blob_images(40, seed=0)
    report = _report(mean_model, images, y).report
    for method in ("occlusion", "rise"):
        entry = report["methods"][method]
        assert entry["verdict"] == "not distinguishable from random"
        assert abs(entry["deletion_difference"]["value"]) < 0.02
        assert abs(entry["insertion_difference"]["value"]) < 0.02
    # Occlusion still finds the bright blob that moves the mean a little, consistently enough for a
    # CI that excludes 0: only the minimum difference keeps that from reading as evidence.
    strict = _report(mean_model, images, y, methods=("occlusion",), min_difference=0.0).report["methods"]["occlusion"]
    assert strict["deletion_difference"]["ci_high"] < 0 and strict["verdict"] == "beats random"


@pytest.mark.parametrize(
    ("deletion", "insertion", "verdict"),
    [
        ((-0.10, -0.15, -0.05), (0.10, 0.05, 0.15), "beats random"),
        ((-0.10, -0.15, -0.05), (0.00, -0.05, 0.05), "beats random on deletion only"),
        ((0.10, 0.05, 0.15), (-0.10, -0.15, -0.05), "worse than random"),
        ((-0.10, -0.15, -0.05), (-0.10, -0.15, -0.05), "mixed: better than random on one curve, worse on the other"),
        ((-0.01, -0.015, -0.005), (0.01, 0.005, 0.015), "not distinguishable from random"),
        ((-0.10, None, None), (0.10, None, None), "too few cases to judge"),
    ],
)
def test_verdict_needs_a_ci_excluding_zero_and_a_difference_that_matters(deletion, insertion, verdict):
    as_dict = lambda t: dict(zip(("value", "ci_low", "ci_high"), t))  # noqa: E731
    assert faithfulness_verdict(as_dict(deletion), as_dict(insertion), 0.02) == verdict


def test_report_is_json_safe_balanced_and_reproducible():
    images, y, _ = _blob_images(40, seed=0)
    result = _report(lesion_model, images, y, seed=3)
    report = result.report
    json.dumps(report, allow_nan=False)
    assert report["n_cases"] == 16 and report["n_positive"] == report["n_negative"] == 8 and report["notes"] == []
    assert result.saliency["occlusion"].shape == result.saliency["rise"].shape == (16, 32, 32)
    assert result.case_rows == sorted(result.case_rows)
    assert [case["row"] for case in report["cases"]] == [row + 1 for row in result.case_rows]
    first = report["cases"][0]
    assert first["image_path"] == f"cases/{result.case_rows[0]:03d}.png" and first["label"] == y[result.case_rows[0]]
    assert first["probability"] == pytest.approx(lesion_model(images[result.case_rows[:1]])[0])
    assert set(first["deletion_auc"]) == set(first["insertion_auc"]) == {"occlusion", "rise", "random"}
    assert report["settings"]["deletion_baseline"].startswith("gaussian blur, sigma 4 px")
    assert _report(lesion_model, images, y, seed=3).case_rows == result.case_rows
    assert _report(lesion_model, images, y, seed=4, methods=("occlusion",)).case_rows != result.case_rows


def _without_seconds(report: dict) -> dict:
    """The report less its timings, which are all that may differ between two runs of the same inputs."""
    report = json.loads(json.dumps(report))
    for entry in [*report["methods"].values(), report["random_baseline"]]:
        del entry["seconds"]
    return report


class _Counted:
    """A predict callable that counts the images it scores (forward passes)."""

    def __init__(self, predict) -> None:
        self.predict = predict
        self.images = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        return self.predict(batch)


def test_each_label_is_judged_on_the_cases_drawn_for_it_as_a_model_of_that_label_alone_judges_them():
    images, y, _ = _blob_images(40, seed=6)
    labels = np.stack([y, np.random.default_rng(1).integers(0, 2, len(y))], axis=1)
    both = lambda b: np.stack([lesion_model(b), mean_model(b)], axis=1)  # noqa: E731
    settings = ExplainSettings(n_cases=14, rise_masks=60, n_resamples=200, seed=2)
    rows, paths = list(range(len(images))), [f"c{i}" for i in range(len(images))]
    explained = explain_cases(both, images, labels, rows, paths, settings)
    for label, alone in enumerate((lesion_model, mean_model)):
        together = explained.report(label)
        own = together.case_rows
        assert len(own) == 7 and together.report["n_explained"] == 14
        # the head alone, asked to explain exactly those cases, measures and judges them the same
        single = explain_cases(alone, images[own], labels[own, label], own, [paths[i] for i in own], replace(settings, n_cases=7)).report(0)
        assert single.case_rows == own
        for key in ("n_cases", "n_positive", "n_negative", "methods", "random_baseline", "cases"):
            assert _without_seconds(together.report)[key] == _without_seconds(single.report)[key], key
        for method in settings.methods:
            np.testing.assert_array_equal(together.saliency[method], single.saliency[method])
    assert not set(explained.report(0).case_rows) & set(explained.report(1).case_rows)


def test_forward_passes_per_explained_case_do_not_depend_on_the_labels():
    images, y, _ = _blob_images(20, seed=7)
    settings = ExplainSettings(n_cases=6, rise_masks=60, n_resamples=50, steps=10)
    rows, paths = list(range(len(images))), [f"c{i}" for i in range(len(images))]
    passes = {}
    for n_labels in (1, 4, 14):
        predict = _Counted(lambda b, n=n_labels: np.repeat(lesion_model(b)[:, None], n, axis=1))
        explained = explain_cases(predict, images, np.repeat(y[:, None], n_labels, axis=1), rows, paths, settings)
        reports = [explained.report(label).report for label in range(n_labels)]
        assert sum(r["n_cases"] for r in reports) == 6  # 14 labels: 8 get no case, and say so
        passes[n_labels] = predict.images
    assert reports[-1]["n_cases"] == 0 and reports[-1]["methods"]["rise"]["verdict"] == "too few cases to judge"
    # Per case: itself, the unoccluded image and 7 x 7 patches (32 px, patch 8, stride 4), the RISE masks,
    # and the 2 x 11 deletion and insertion steps of each random map and of each method's map.
    per_case = 1 + 1 + 49 + 60 + (3 + 2) * 2 * 11
    assert passes == {1: 6 * per_case, 4: 6 * per_case, 14: 6 * per_case}


def test_the_labels_take_turns_and_each_draws_both_classes_where_it_can():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 5)) < [0.5, 0.3, 0.1, 0.03, 0.0]).astype(int)  # the last label has no positive
    positions, drawn_for = select_cases(y, 23, seed=1)
    assert len(positions) == 23 and list(positions) == sorted(set(positions))
    assert np.bincount(drawn_for).tolist() == [4, 4, 5, 5, 5]  # turns from the fewest positives up
    for label in range(4):
        own = positions[drawn_for == label]
        assert (y[own, label] == 1).sum() == (len(own) + 1) // 2  # half positives, rounded up
    assert (y[positions[drawn_for == 4], 4] == 0).all()  # no positive to draw: negatives make up its share
    again = select_cases(y, 23, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (positions, drawn_for)))
    assert not np.array_equal(select_cases(y, 23, seed=2)[0], positions)


def test_a_rare_label_draws_its_only_positives_and_its_report_says_what_it_lacks():
    images, _, _ = _blob_images(30, seed=3)
    labels = np.zeros((30, 3), dtype=int)
    labels[:, 0] = np.arange(30) % 2
    labels[[5, 11], 1] = 1  # two positives only
    settings = ExplainSettings(n_cases=12, rise_masks=60, n_resamples=100, methods=("occlusion",))
    both = lambda b: np.repeat(lesion_model(b)[:, None], 3, axis=1)  # noqa: E731
    explained = explain_cases(both, images, labels, list(range(30)), [f"c{i}" for i in range(30)], settings)
    rare = explained.report(1).report
    assert rare["n_cases"] == 4 and rare["n_positive"] == 2 and rare["n_explained"] == 12
    assert {case["row"] for case in rare["cases"] if case["label"] == 1} == {6, 12}
    assert "4 of the 12 explained cases were drawn for this label (the 3 labels take turns)" in rare["notes"][0]
    assert "too few to judge this label's maps alone (at least 6)" in rare["notes"][1]
    assert rare["methods"]["occlusion"]["verdict"] == "too few cases to judge"
    assert explained.report(2).report["notes"][-1] == "only negative cases were available"
    pooled = rare["pooled"]
    assert pooled["n_cases"] == 12 and pooled["methods"]["occlusion"]["deletion_difference"]["ci_low"] is not None


def test_pooled_judges_every_explained_case_on_the_maps_of_its_own_label():
    images, y, _ = _blob_images(40, seed=0)
    labels = np.stack([y, y, y, y], axis=1)
    four = lambda b: np.stack([lesion_model(b), mean_model(b), lesion_model(b), mean_model(b)], axis=1)  # noqa: E731
    settings = ExplainSettings(n_cases=16, rise_masks=200, n_resamples=500, seed=3)
    explained = explain_cases(four, images, labels, list(range(40)), [f"c{i}" for i in range(40)], settings)
    reports = [explained.report(label).report for label in range(4)]
    assert all(r["pooled"] == reports[0]["pooled"] for r in reports)
    pooled = reports[0]["pooled"]
    own = [np.asarray([c["deletion_auc"]["occlusion"] - c["deletion_auc"]["random"] for c in r["cases"]]) for r in reports]
    value = pooled["methods"]["occlusion"]["deletion_difference"]["value"]
    assert pooled["n_cases"] == 16 and value == pytest.approx(np.concatenate(own).mean())
    assert all(r["methods"]["occlusion"]["verdict"] == "too few cases to judge" for r in reports)  # 4 cases each
    # half the cases are explained for a model that looks at the lesion: the pooled maps still beat random
    assert pooled["methods"]["occlusion"]["deletion_difference"]["ci_high"] < 0


def test_a_label_with_nan_outputs_is_refused_and_the_others_go_on():
    images, y, _ = _blob_images(12, seed=0)
    broken = lambda b: np.stack([lesion_model(b), np.full(len(b), np.nan)], axis=1)  # noqa: E731
    settings = ExplainSettings(n_cases=4, rise_masks=60, n_resamples=50, methods=("occlusion",))
    explained = explain_cases(broken, images, np.stack([y, y], axis=1), list(range(12)), [f"c{i}" for i in range(12)], settings)
    first = explained.report(0).report
    assert first["n_cases"] == 2 and "NaN or infinite" in first["pooled"]["error"]
    with pytest.raises(ExplainabilityError, match="NaN or infinite probability\\(ies\\) for the explained cases"):
        explained.report(1)


def test_labels_must_match_the_models_outputs():
    images, y, _ = _blob_images(6, seed=0)
    with pytest.raises(ExplainabilityError, match="predict gives 1 label"):
        explain_cases(lesion_model, images, np.stack([y, y], axis=1), list(range(6)), [f"c{i}" for i in range(6)])


def test_selection_keeps_the_minority_class():
    y = np.zeros(30, dtype=int)
    y[[4, 17]] = 1
    chosen, drawn_for = select_cases(y, 10, seed=0)
    assert len(chosen) == 10 and set(np.flatnonzero(y)) <= set(chosen) and not drawn_for.any()
    assert len(select_cases(np.ones(5, dtype=int), 4, seed=0)[0]) == 4  # one class only: all from it


@pytest.mark.parametrize(("confidence", "cases"), [(0.95, 6), (0.9, 5), (0.99, 8), (0.75, 3)])
def test_a_ci_needs_enough_cases_for_a_sign_test_to_reach_the_confidence(confidence, cases):
    assert min_cases_to_judge(confidence) == cases
    assert 2 * 0.5**cases <= 1 - confidence < 2 * 0.5 ** (cases - 1)


def test_five_cases_that_all_agree_are_too_few_to_judge_and_six_are_enough():
    images, y, _ = _blob_images(40, seed=0)
    five, six = (_report(lesion_model, images, y, n_cases=n, methods=("occlusion",)).report for n in (5, 6))
    assert five["methods"]["occlusion"]["verdict"] == "too few cases to judge"
    assert five["methods"]["occlusion"]["deletion_difference"]["value"] < -0.1  # every case agrees, yet no CI
    assert "5 case(s) are too few to judge this label's maps alone (at least 6); raise explain_cases" in five["notes"]
    assert six["methods"]["occlusion"]["verdict"] == "beats random" and six["notes"] == []


def test_fewer_cases_than_asked_uses_them_all_and_says_so():
    images, y, _ = _blob_images(5, seed=0)
    result = _report(lesion_model, images, y, n_cases=32, methods=("occlusion",), n_random=2)
    assert result.report["n_cases"] == 5 and result.case_rows == [0, 1, 2, 3, 4]
    assert "fewer than the 32 asked" in result.report["notes"][0]
    assert result.report["methods"]["occlusion"]["verdict"] == "too few cases to judge"


def test_a_model_returning_nan_is_refused_with_a_message():
    images, y, _ = _blob_images(4, seed=0)
    with pytest.raises(ExplainabilityError, match="NaN or infinite"):
        _report(lambda b: np.full(len(b), np.nan), images, y)


def test_zero_cases_and_unknown_methods_are_refused():
    with pytest.raises(ExplainabilityError, match="no cases to explain"):
        explain_cases(lesion_model, np.zeros((0, 1, 32, 32), np.float32), np.zeros(0), [], [])
    images, y, _ = _blob_images(4, seed=0)
    with pytest.raises(ExplainabilityError, match="unknown saliency method"):
        _report(lesion_model, images, y, methods=("gradcam",))


# ---------------------------------------------------------------------------
# Overlay
# ---------------------------------------------------------------------------


def test_overlay_is_a_deterministic_png_of_the_image_size():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 20, 30)).astype(np.float32)
    saliency = rng.normal(size=(20, 30))
    data = overlay_png(image, saliency)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG" and decoded.size == (30, 20) and decoded.mode == "RGB"
    assert overlay_png(image, saliency) == data
    assert overlay_png(image[0], saliency) == data  # (C, H, W) uses the first channel


def test_overlay_colours_the_salient_pixel_and_leaves_the_rest_dark_on_a_dark_image():
    image = np.zeros((16, 16))
    saliency = np.zeros((16, 16))
    saliency[5, 9] = 3.0
    saliency[0, 0] = -1.0  # negative: clipped like zero
    pixels = np.asarray(Image.open(io.BytesIO(overlay_png(image, saliency, alpha=0.5))))
    assert pixels[5, 9].tolist() == [126, 127, 82]  # half of inferno's top colour (252, 255, 164)
    assert pixels[0, 0].tolist() == pixels[15, 15].tolist() and pixels[15, 15].max() <= 2  # inferno's bottom is black
    with pytest.raises(ExplainabilityError, match="do not match"):
        overlay_png(image, saliency[:8])
