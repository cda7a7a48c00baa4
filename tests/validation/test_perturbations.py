"""Acquisition-shift perturbations: each changes images as specified, reproducibly, and fails with a clear message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radtrust_engine.perturbations import (
    PERTURBATIONS,
    SEVERITIES,
    SEVERITY_LEVELS,
    PerturbationError,
    image_seed,
    perturb,
    perturb_batch,
    perturbations_for,
)

NAMES = list(PERTURBATIONS)
DETERMINISTIC = {"blur", "windowing", "gamma", "downsample", "jpeg"}


def phantom(n: int = 64, seed: int = 0) -> np.ndarray:
    """A normalised (1, n, n) tensor: an elliptic body with a gradient, a bright lesion and fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] / (n - 1) * 2 - 1
    body = (xx**2 / 0.8 + yy**2 / 0.6 < 1).astype(float)
    image = body * (0.6 + 0.2 * xx) + 0.8 * np.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) / 0.01)
    image += 0.05 * body * rng.standard_normal((n, n))
    return ((image - image.mean()) / image.std())[None].astype(np.float32)


def volume(depth: int = 12, n: int = 32) -> np.ndarray:
    """A (1, D, H, W) tensor: the phantom's slices, fading along D."""
    slices = [phantom(n, seed=d)[0] * (1 - 0.05 * d) for d in range(depth)]
    return np.stack(slices)[None].astype(np.float32)


def mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def centroid(image: np.ndarray) -> np.ndarray:
    """(row, column) centre of mass of a non-negative 2D image."""
    rows, cols = np.indices(image.shape)
    return np.array([(rows * image).sum(), (cols * image).sum()]) / image.sum()


def high_frequency_energy(image: np.ndarray) -> float:
    spectrum = np.abs(np.fft.fft2(image - image.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]), indexing="ij")
    return float(spectrum[np.hypot(fy, fx) > 0.25].sum())


@pytest.mark.parametrize("name", NAMES)
def test_keeps_shape_and_dtype_and_leaves_input_alone(name):
    for x in (phantom(), volume(), np.concatenate([phantom(32, 1), phantom(32, 2), phantom(32, 3)])):
        before = x.copy()
        for severity in SEVERITY_LEVELS:
            y = perturb(x, name, severity, seed=3)
            assert y.shape == x.shape and y.dtype == np.float32
            assert not np.array_equal(y, x), f"{name} severity {severity} changed nothing"
        np.testing.assert_array_equal(x, before)
    assert perturb(phantom().astype(np.float64), name, 1, seed=0).dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_reproducible_from_seed(name):
    x = phantom()
    np.testing.assert_array_equal(perturb(x, name, 2, seed=5), perturb(x, name, 2, seed=5))
    distinct = {perturb(x, name, 2, seed=s).tobytes() for s in range(8)}
    if name in DETERMINISTIC:
        assert len(distinct) == 1
    else:
        assert len(distinct) > 1, f"{name} gave the same output for 8 seeds"


@pytest.mark.parametrize("name", NAMES)
def test_effect_grows_with_severity(name):
    for image_seed_, seed in ((0, 0), (1, 1), (2, 7), (3, 11)):
        x = phantom(64, image_seed_)
        changes = [mean_abs_change(perturb(x, name, s, seed), x) for s in SEVERITY_LEVELS]
        assert changes[0] < changes[1] < changes[2], f"{name}: mean absolute change {changes}"


def test_severity_table_covers_every_perturbation():
    assert set(SEVERITIES) == set(PERTURBATIONS)
    for perturbation in PERTURBATIONS.values():
        described = perturbation.to_dict()
        assert described["parameter"] and len(described["severity_values"]) == 3
        assert perturbation.modality in ("all", "MR")
    assert {p.name for p in perturbations_for("CT")} == {n for n, p in PERTURBATIONS.items() if p.modality == "all"}
    assert {p.name for p in perturbations_for("mr")} == set(PERTURBATIONS)


@pytest.mark.parametrize("severity", SEVERITY_LEVELS)
def test_gaussian_noise_hits_its_snr(severity):
    x = phantom(128)
    for seed in range(3):
        noise = perturb(x, "gaussian_noise", severity, seed).astype(np.float64) - x
        snr_db = 10 * math.log10(x.var() / noise.var())
        assert snr_db == pytest.approx(SEVERITIES["gaussian_noise"].at(severity), abs=0.2)
        assert abs(noise.mean()) < 0.05 * noise.std()


def test_dose_reduction_noise_grows_as_count_falls():
    x = phantom(128)
    lo, hi = float(x.min()), float(x.max())
    variances = []
    for severity in SEVERITY_LEVELS:
        noise = perturb(x, "dose_reduction", severity, seed=1).astype(np.float64) - x
        peak = SEVERITIES["dose_reduction"].at(severity)
        expected = (hi - lo) ** 2 * float(((x - lo) / (hi - lo)).mean()) / peak  # Poisson: variance = mean count
        assert noise.var() == pytest.approx(expected, rel=0.1)
        assert abs(noise.mean()) < 0.05 * noise.std()
        variances.append(noise.var())
    assert variances[0] < variances[1] < variances[2]


def test_blur_lowers_high_frequency_energy():
    x = phantom()
    energies = [high_frequency_energy(x[0])] + [high_frequency_energy(perturb(x, "blur", s, 0)[0]) for s in SEVERITY_LEVELS]
    assert energies == sorted(energies, reverse=True) and energies[3] < 0.01 * energies[0]


def spot(n: int, row: float, col: float) -> np.ndarray:
    rows, cols = np.indices((n, n))
    return np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / 4.0)[None].astype(np.float32)


@pytest.mark.parametrize("severity", SEVERITY_LEVELS)
def test_rotation_moves_a_point_by_the_angle(severity):
    n, radius = 65, 24.0
    centre = (n - 1) / 2
    x = spot(n, centre, centre + radius)
    angle = math.radians(SEVERITIES["rotation"].at(severity))
    directions = set()
    for seed in range(8):
        moved = centroid(perturb(x, "rotation", severity, seed)[0])
        candidates = {sign: np.array([centre - sign * radius * math.sin(angle), centre + radius * math.cos(angle)]) for sign in (1, -1)}
        sign, expected = min(candidates.items(), key=lambda item: np.linalg.norm(moved - item[1]))
        assert np.linalg.norm(moved - expected) < 0.3, (moved, candidates)
        directions.add(sign)
    assert directions == {1, -1}, "rotation direction should be random"


def test_translation_shifts_by_its_fraction_of_the_size():
    n = 64
    x = spot(n, 32.0, 32.0)
    for severity in SEVERITY_LEVELS:
        for seed in range(3):
            moved = centroid(perturb(x, "translation", severity, seed)[0]) - centroid(x[0])
            assert np.linalg.norm(moved) == pytest.approx(SEVERITIES["translation"].at(severity) * n, abs=0.2)


def test_downsample_keeps_a_constant_image_and_thickens_slices():
    constant = np.full((1, 8, 40, 40), -0.7, np.float32)
    for severity in SEVERITY_LEVELS:
        np.testing.assert_allclose(perturb(constant, "downsample", severity, 0), constant, atol=1e-6)
        np.testing.assert_allclose(perturb(constant[:, 0], "downsample", severity, 0), constant[:, 0], atol=1e-6)
    slab = np.zeros((1, 16, 16, 16), np.float32)
    slab[0, 8] = 1.0  # one bright slice: a thicker slice spreads it along D
    spread = perturb(slab, "downsample", 2, 0)[0].mean(axis=(1, 2))
    assert spread[8] < 0.9 and spread[6] > 0.05 and spread[10] > 0.05


def test_jpeg_error_orders_by_quality():
    x = phantom(96)
    errors = [mean_abs_change(perturb(x, "jpeg", s, 0), x) for s in SEVERITY_LEVELS]  # quality 75, 50, 25
    assert errors[0] < errors[1] < errors[2]
    assert errors[0] < 0.03 * float(x.max() - x.min())


def test_kspace_undersampling_keeps_the_centre():
    name = "kspace_undersampling"
    n = 64
    rows, cols = np.indices((n, n))
    smooth = np.exp(-((rows - 32) ** 2 + (cols - 30) ** 2) / 300.0)[None].astype(np.float32)
    checkerboard = ((rows + cols) % 2).astype(np.float32)[None]
    for severity in SEVERITY_LEVELS:
        smooth_changes = [mean_abs_change(perturb(smooth, name, severity, s), smooth) for s in range(6)]
        board_changes = [mean_abs_change(perturb(checkerboard, name, severity, s), checkerboard) for s in range(6)]
        assert max(smooth_changes) < 0.01  # of a range of 1
        assert np.mean(board_changes) > 0.2


def test_motion_ghosting_puts_signal_into_the_background():
    n = 64
    x = np.zeros((1, n, n), np.float32)
    x[0, 28:36, 24:40] = 1.0  # an object in an empty field of view
    background = np.ones((n, n), bool)
    background[24:40, :] = False  # rows away from the object: ghosts appear along H
    for seed in range(4):
        ghost = [float(perturb(x, "motion_ghosting", s, seed)[0][background].mean()) for s in SEVERITY_LEVELS]
        assert 0.005 < ghost[0] < ghost[1] < ghost[2]


def test_bias_field_gain_stays_within_its_bound():
    x = np.abs(phantom()) + 1.0  # positive everywhere above the minimum
    lo = float(x.min())
    for severity in SEVERITY_LEVELS:
        a = SEVERITIES["bias_field"].at(severity)
        gain = (perturb(x, "bias_field", severity, 4) - lo) / (x - lo + 1e-12)
        inside = x > lo + 0.1
        assert gain[inside].min() >= math.exp(-a) - 1e-4 and gain[inside].max() <= math.exp(a) + 1e-4
        assert gain[inside].max() - gain[inside].min() > 0.5 * (math.exp(a) - 1)  # the field does vary


def test_replicated_grey_channels_stay_replicated():
    grey = phantom()
    rgb = np.repeat(grey, 3, axis=0)
    for name in NAMES:
        y = perturb(rgb, name, 2, seed=9)
        np.testing.assert_array_equal(y, np.repeat(perturb(grey, name, 2, seed=9), 3, axis=0))


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_input_raises(name):
    x = phantom()
    x[0, 10, 10] = np.nan
    with pytest.raises(PerturbationError, match="non-finite"):
        perturb(x, name, 1, seed=0)


def test_non_finite_result_raises_with_a_clear_message():
    huge = np.full((1, 16, 16), 3e38, np.float32)
    huge[0, :8] = -3e38  # a finite image whose range overflows float32 when scaled
    with pytest.raises(PerturbationError, match=r"'intensity_scale_offset' at severity 2 produced \d+ non-finite"):
        perturb(huge, "intensity_scale_offset", 2, seed=0)
    assert issubclass(PerturbationError, ValueError)


def test_unknown_name_severity_or_shape_raises_listing_valid_ones():
    x = phantom()
    with pytest.raises(PerturbationError, match="did you mean 'gaussian_noise'") as error:
        perturb(x, "gausian_noise", 1, seed=0)
    assert all(name in str(error.value) for name in NAMES)
    for severity in (0, 4, True, 1.5):
        with pytest.raises(PerturbationError, match="valid: 1, 2, 3"):
            perturb(x, "blur", severity, seed=0)
    with pytest.raises(PerturbationError, match="shape"):
        perturb(x[0], "blur", 1, seed=0)
    with pytest.raises(PerturbationError, match="non-negative integer"):
        perturb(x, "blur", 1, seed=-1)
    with pytest.raises(PerturbationError, match="valid: 1, 2, 3"):
        perturb_batch(x[None], "blur", 5, seed=0)


def test_batch_matches_single_images_whatever_the_batching():
    batch = np.stack([phantom(32, i) for i in range(5)] + [phantom(32, 0)])
    whole = perturb_batch(batch, "gaussian_noise", 2, seed=42)
    head = perturb_batch(batch[:2], "gaussian_noise", 2, seed=42)
    tail = perturb_batch(batch[2:], "gaussian_noise", 2, seed=42, start=2)
    split = np.concatenate([head, tail])
    np.testing.assert_array_equal(whole, split)
    for i in range(len(batch)):
        np.testing.assert_array_equal(whole[i], perturb(batch[i], "gaussian_noise", 2, image_seed(42, i)))
    assert not np.array_equal(whole[0], whole[5])  # the same image at two positions gets its own noise
    volumes = perturb_batch(np.stack([volume(6, 16)] * 2), "bias_field", 1, seed=0)
    assert volumes.shape == (2, 1, 6, 16, 16) and volumes.dtype == np.float32


def test_batch_failure_names_the_image():
    batch = np.stack([phantom(16, i) for i in range(3)])
    batch[2, 0, 0, 0] = np.inf
    with pytest.raises(PerturbationError, match="^image 7: .*non-finite"):
        perturb_batch(batch, "blur", 1, seed=0, start=5)
