"""3D volumes: reading a DICOM series or a NIfTI file, resampling, sliding-window inference and the
per-volume segmentation metrics.

CT and MR come as volumes of hundreds of slices in which a lesion occupies a tiny fraction, so a
model sees them through windows and its results are read per volume (docs/methods.md, volumes).

1. A DICOM series (``read_dicom_series``): one Series Instance UID, one orientation, one pixel
   spacing and size; slices sorted by their position along the slice normal (the cross product of
   the row and column directions of Image Orientation (Patient)); the gaps must be equal. A
   mixed series, a missing slice (a gap of about twice the spacing), an uneven spacing or a
   volume above ``max_voxels`` is refused with the reason (``VolumeError``), before any pixel is read.
2. NIfTI (``read_nifti``): nibabel's (x, y, z) turned to (z, y, x), spacing from the header's zooms.
3. ``resample`` to the model's spacing with ``scipy.ndimage.zoom`` (linear for images, nearest for masks).
4. ``sliding_window``: windows of the model's input size at ``overlap``, each prediction weighted by a
   Gaussian centred on the window (sigma 1/8 of its size) so that seams do not show; one window is
   in memory at a time besides the volume-sized sum and weight.
5. ``volume_scores``: Dice, HD95 (mm), surface Dice at a tolerance (mm) and the volume error, per
   structure; ``volume_summary`` gives their means with patient-bootstrap BCa intervals.
Plain Python, NumPy, SciPy, pydicom and nibabel (no Django).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import patient_bootstrap_counts
from .stats import bca_intervals

MAX_VOXELS = 512 * 512 * 1024
"""The default largest volume read (about 1 GiB as float32): above it the volume is skipped."""

_TOLERANCE = 1e-3  # relative: positions and spacings written to a few decimals still agree


class VolumeError(ValueError):
    """A volume that cannot be read or evaluated, with the reason (the case is skipped)."""


@dataclass
class Volume:
    """Voxels ``(z, y, x)`` as float32 and their spacing in mm, in the same order."""

    array: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def n_voxels(self) -> int:
        return int(self.array.size)


def _check_size(shape: Sequence[int], max_voxels: int) -> None:
    voxels = int(np.prod(shape))
    if voxels > max_voxels:
        raise VolumeError(f"the volume has {voxels:,} voxels ({' x '.join(map(str, shape))}), above the limit of {max_voxels:,}")


def _floats(value: Any, n: int, what: str, where: str) -> np.ndarray:
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise VolumeError(f"{where}: {what} is missing or not numeric") from None
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise VolumeError(f"{where}: {what} needs {n} finite numbers")
    return array


def read_dicom_series(paths: Sequence[str | os.PathLike], *, max_voxels: int = MAX_VOXELS) -> Volume:
    """The volume of one DICOM series from its slice files (module docstring, step 1)."""
    import pydicom  # imported on first use, as the image reader does

    from .dicom_pixels import PixelsRefused, decode_dicom, plan_dicom

    if len(paths) < 2:
        raise VolumeError(f"a series needs at least two slices, got {len(paths)}")
    headers = []
    for path in paths:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as exc:
            raise VolumeError(f"{Path(path).name}: unreadable DICOM ({type(exc).__name__})") from None
    series = {str(getattr(h, "SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise VolumeError(f"the files mix {len(series)} series (Series Instance UIDs differ); give one series per volume")
    first = Path(paths[0]).name
    orientation = _floats(getattr(headers[0], "ImageOrientationPatient", None), 6, "Image Orientation (Patient)", first)
    pixel_spacing = _floats(getattr(headers[0], "PixelSpacing", None), 2, "Pixel Spacing", first)
    size = (int(getattr(headers[0], "Rows", 0)), int(getattr(headers[0], "Columns", 0)))
    normal = np.cross(orientation[:3], orientation[3:])
    positions = []
    for path, header in zip(paths, headers, strict=True):
        name = Path(path).name
        if not np.allclose(
            _floats(getattr(header, "ImageOrientationPatient", None), 6, "Image Orientation (Patient)", name), orientation, atol=_TOLERANCE
        ):
            raise VolumeError(f"{name}: its orientation differs from the first slice's")
        if not np.allclose(_floats(getattr(header, "PixelSpacing", None), 2, "Pixel Spacing", name), pixel_spacing, rtol=_TOLERANCE):
            raise VolumeError(f"{name}: its pixel spacing differs from the first slice's")
        if (int(getattr(header, "Rows", 0)), int(getattr(header, "Columns", 0))) != size:
            raise VolumeError(f"{name}: its size differs from the first slice's {size[0]} x {size[1]}")
        positions.append(float(_floats(getattr(header, "ImagePositionPatient", None), 3, "Image Position (Patient)", name) @ normal))
    order = np.argsort(positions, kind="stable")
    gaps = np.diff(np.asarray(positions)[order])
    if np.any(gaps <= _TOLERANCE):
        raise VolumeError("two slices share one position along the slice normal (a duplicate or a second acquisition)")
    spacing = float(np.median(gaps))
    uneven = np.abs(gaps - spacing) > _TOLERANCE * spacing + 1e-4
    if uneven.any():
        worst = float(gaps[np.argmax(np.abs(gaps - spacing))])
        if np.any(gaps[uneven] > 1.5 * spacing):
            missing = int(np.sum(np.round(gaps[uneven] / spacing) - 1))
            raise VolumeError(f"about {missing} slice(s) missing: a gap of {worst:.3g} mm where the spacing is {spacing:.3g} mm")
        raise VolumeError(f"inconsistent slice spacing: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm")
    _check_size((len(paths), *size), max_voxels)
    slices = []
    for index in order:
        ds = pydicom.dcmread(paths[index])
        try:
            pixels, _ = decode_dicom(ds, plan_dicom(ds, frame=None, voi=False))
        except PixelsRefused as exc:
            raise VolumeError(f"{Path(paths[index]).name}: {exc.reason}") from None
        if pixels.shape != size:
            raise VolumeError(f"{Path(paths[index]).name}: a slice of shape {list(pixels.shape)}; a series volume needs grey 2D slices")
        slices.append(pixels.astype(np.float32))
    return Volume(np.stack(slices), (spacing, float(pixel_spacing[0]), float(pixel_spacing[1])))


def read_nifti(path: str | os.PathLike, *, max_voxels: int = MAX_VOXELS) -> Volume:
    """A 3D NIfTI volume as ``(z, y, x)`` with its spacing (module docstring, step 2)."""
    import nibabel  # only NIfTI volumes need it

    try:
        image = nibabel.load(path)
        shape = tuple(int(n) for n in image.shape)
        zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    except Exception as exc:
        raise VolumeError(f"{Path(path).name}: unreadable NIfTI ({type(exc).__name__})") from None
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        raise VolumeError(f"{Path(path).name}: a NIfTI of shape {' x '.join(map(str, shape))} is not one 3D volume")
    _check_size(shape[:3], max_voxels)
    array = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape[:3])
    if not np.all(np.isfinite(array)):
        raise VolumeError(f"{Path(path).name}: the volume holds values that are not finite numbers")
    return Volume(np.ascontiguousarray(array.transpose(2, 1, 0)), (zooms[2], zooms[1], zooms[0]))


def resample(volume: Volume, spacing: Sequence[float], *, mask: bool = False) -> Volume:
    """``volume`` at ``spacing`` (mm, z y x): linear interpolation, nearest neighbour for a mask."""
    from scipy.ndimage import zoom

    factors = [old / new for old, new in zip(volume.spacing, spacing, strict=True)]
    if np.allclose(factors, 1.0):
        return volume
    array = zoom(volume.array, factors, order=0 if mask else 1, mode="nearest", grid_mode=False)
    return Volume(array.astype(volume.array.dtype, copy=False), tuple(float(s) for s in spacing))


# ---------------------------------------------------------------------------
# Sliding-window inference
# ---------------------------------------------------------------------------


def gaussian_weights(window: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """A Gaussian over the window, 1 at the centre, never below 1e-3 (edges still count a little)."""
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / max(n * sigma_scale, 1e-6)) ** 2) for n in window]
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start positions along one axis: steps of ``window * (1 - overlap)``, the last flush with the end."""
    if size <= window:
        return [0]
    step = max(1, int(round(window * (1.0 - overlap))))
    starts = list(range(0, size - window, step))
    return [*starts, size - window]


def sliding_window(array: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], window: Sequence[int], *, overlap: float = 0.5) -> np.ndarray:
    """The model's output over the whole ``array`` ``(z, y, x)``: ``predict`` takes one window
    ``(1, 1, *window)`` and returns ``(channels, *window)``; overlapping windows are blended with
    Gaussian weights. A volume smaller than the window is padded with its edge values and cropped back."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    window = tuple(int(w) for w in window)
    pad = [(0, max(0, w - n)) for n, w in zip(array.shape, window, strict=True)]
    padded = np.pad(array, pad, mode="edge") if any(p for _, p in pad) else array
    weights = gaussian_weights(window)
    total = weight = None
    grid = [window_starts(n, w, overlap) for n, w in zip(padded.shape, window, strict=True)]
    for z in grid[0]:
        for y in grid[1]:
            for x in grid[2]:
                region = (slice(z, z + window[0]), slice(y, y + window[1]), slice(x, x + window[2]))
                patch = np.ascontiguousarray(padded[region], dtype=np.float32)[None, None]
                out = np.asarray(predict(patch), dtype=np.float32)
                out = out.reshape(-1, *window)
                if total is None:
                    total = np.zeros((out.shape[0], *padded.shape), dtype=np.float32)
                    weight = np.zeros(padded.shape, dtype=np.float32)
                total[(slice(None), *region)] += out * weights
                weight[region] += weights
    result = total / weight
    return result[(slice(None), *(slice(0, n) for n in array.shape))]


# ---------------------------------------------------------------------------
# Metrics per volume and structure
# ---------------------------------------------------------------------------


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary volumes; 1 when both are empty."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(pred & truth)) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion, generate_binary_structure

    return mask & ~binary_erosion(mask, generate_binary_structure(mask.ndim, 1), border_value=0)


def _surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``truth``'s surface, and back."""
    from scipy.ndimage import distance_transform_edt

    sp, st = _surface(pred), _surface(truth)
    to_truth = distance_transform_edt(~st, sampling=spacing)
    to_pred = distance_transform_edt(~sp, sampling=spacing)
    return to_truth[sp], to_pred[st]


@dataclass(frozen=True)
class VolumeScores:
    """One structure of one volume: overlap, surface distance and volume, in mm and millilitres."""

    dice: float
    hd95: float | None  # None when exactly one of the two is empty (no distance between them)
    surface_dice: float
    volume_ml: float
    truth_ml: float

    @property
    def volume_error(self) -> float | None:
        """(predicted - true) / true volume; None for an empty ground truth."""
        return None if self.truth_ml == 0 else (self.volume_ml - self.truth_ml) / self.truth_ml

    def to_dict(self) -> dict[str, Any]:
        return {
            "dice": round(self.dice, 4),
            "hd95_mm": None if self.hd95 is None else round(self.hd95, 2),
            "surface_dice": round(self.surface_dice, 4),
            "volume_ml": round(self.volume_ml, 3),
            "truth_ml": round(self.truth_ml, 3),
            "volume_error": None if self.volume_error is None else round(self.volume_error, 4),
        }


def volume_scores(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], *, tolerance_mm: float = 1.0) -> VolumeScores:
    """The scores of one binary structure. HD95: the larger of the two directed 95th percentiles of
    surface distances; surface Dice: the share of both surfaces within ``tolerance_mm`` of the other."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise VolumeError(f"prediction {list(pred.shape)} and ground truth {list(truth.shape)} differ in shape")
    ml = float(np.prod(spacing)) / 1000.0
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        hd95, surface = 0.0, 1.0
    elif has_pred != has_truth:
        hd95, surface = None, 0.0
    else:
        a, b = _surface_distances(pred, truth, spacing)
        hd95 = float(max(np.percentile(a, 95), np.percentile(b, 95)))
        surface = float((np.sum(a <= tolerance_mm) + np.sum(b <= tolerance_mm)) / (a.size + b.size))
    return VolumeScores(dice(pred, truth), hd95, surface, int(pred.sum()) * ml, int(truth.sum()) * ml)


def structure_scores(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], structures: Sequence[str], *, tolerance_mm: float = 1.0
) -> dict[str, VolumeScores]:
    """Scores per structure of label volumes (0 background, ``k`` the ``k``-th structure's voxels)."""
    return {name: volume_scores(pred == k, truth == k, spacing, tolerance_mm=tolerance_mm) for k, name in enumerate(structures, start=1)}


_SUMMARY = ("dice", "hd95", "surface_dice", "volume_error")


def volume_summary(
    scores: Sequence[VolumeScores], patient_ids: Sequence[str], *, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, float | int | None]]:
    """Mean of each metric over the volumes where it is defined, with a BCa interval over patients
    resampled with replacement (the volumes of one patient together)."""
    _, patient = np.unique(np.asarray(patient_ids, dtype=str), return_inverse=True)
    n_patients = int(patient.max()) + 1 if len(scores) else 0
    values = np.array([[getattr(s, m) if getattr(s, m) is not None else np.nan for m in _SUMMARY] for s in scores], dtype=np.float64)
    values = values.reshape(len(scores), len(_SUMMARY))
    defined = np.isfinite(values)
    sums = np.stack([np.bincount(patient, weights=np.where(defined[:, j], values[:, j], 0.0), minlength=n_patients) for j in range(len(_SUMMARY))])
    counts = np.stack([np.bincount(patient, weights=defined[:, j].astype(float), minlength=n_patients) for j in range(len(_SUMMARY))])

    def means(weights: np.ndarray) -> np.ndarray:  # (k, patients) -> (metrics, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums @ weights.T) / (counts @ weights.T)

    point = means(np.ones((1, n_patients)))[:, 0] if n_patients else np.full(len(_SUMMARY), np.nan)
    low = high = np.full(len(_SUMMARY), np.nan)
    if n_patients >= 2 and n_resamples > 0:
        samples = means(patient_bootstrap_counts(np.random.default_rng(seed), n_patients, n_resamples))
        jackknife = means(1.0 - np.eye(n_patients))
        low, high, _ = bca_intervals(point, samples, jackknife, n_patients, confidence)
    return {
        metric: {
            "mean": _rounded(point[j]),
            "low": _rounded(low[j]),
            "high": _rounded(high[j]),
            "n_volumes": int(defined[:, j].sum()),
        }
        for j, metric in enumerate(_SUMMARY)
    }


def _rounded(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


# ---------------------------------------------------------------------------
# A model over a set of volumes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeSettings:
    """How a 3D model sees volumes: its spacing (mm, z y x), its window, the overlap, the largest
    volume read, the probability threshold (one output channel) and the surface-Dice tolerance."""

    spacing: tuple[float, float, float]
    window: tuple[int, int, int]
    overlap: float = 0.5
    max_voxels: int = MAX_VOXELS
    threshold: float = 0.5
    tolerance_mm: float = 1.0


def segment_volume(forward: Callable[[np.ndarray], np.ndarray], volume: Volume, settings: VolumeSettings) -> np.ndarray:
    """Label volume (0 background, ``k`` structure ``k``) on ``volume``'s own grid: resampled to the
    model's spacing, predicted window by window, and brought back by nearest neighbour. ``forward``
    maps a window ``(1, 1, *window)`` to the model's first output ``(1, channels, *window)``; one
    channel is thresholded, several are read as classes with channel 0 the background."""
    from scipy.ndimage import zoom

    if volume.n_voxels > settings.max_voxels:
        _check_size(volume.array.shape, settings.max_voxels)
    model_grid = resample(volume, settings.spacing)
    probabilities = sliding_window(model_grid.array, lambda patch: np.asarray(forward(patch))[0], settings.window, overlap=settings.overlap)
    if probabilities.shape[0] == 1:
        labels = (probabilities[0] >= settings.threshold).astype(np.uint8)
    else:
        labels = np.argmax(probabilities, axis=0).astype(np.uint8)
    if labels.shape != volume.array.shape:
        labels = zoom(labels, [n / m for n, m in zip(volume.array.shape, labels.shape, strict=True)], order=0, grid_mode=False)
        labels = np.pad(labels, [(0, max(0, n - m)) for n, m in zip(volume.array.shape, labels.shape, strict=True)], mode="edge")
        labels = labels[tuple(slice(0, n) for n in volume.array.shape)]
    return labels


@dataclass(frozen=True)
class VolumeCase:
    """One volume to evaluate: how to read it and its ground truth (a label volume on its grid)."""

    case_id: str
    patient_id: str
    read: Callable[[], tuple[Volume, np.ndarray]]


def evaluate_volumes(
    cases: Iterable[VolumeCase],
    forward: Callable[[np.ndarray], np.ndarray],
    settings: VolumeSettings,
    structures: Sequence[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per volume and structure the scores, per structure their means with patient intervals, and
    the volumes skipped with their reasons; ``VolumeError`` when no volume could be evaluated.
    ``cases`` is read once, in order: a generator keeps one volume in memory at a time."""
    per_volume, skipped = [], []
    for case in cases:
        try:
            volume, truth = case.read()
            if truth.shape != volume.array.shape:
                raise VolumeError(f"ground truth {list(truth.shape)} and volume {list(volume.array.shape)} differ in shape")
            pred = segment_volume(forward, volume, settings)
            scores = structure_scores(pred, truth, volume.spacing, structures, tolerance_mm=settings.tolerance_mm)
        except VolumeError as exc:
            skipped.append({"case_id": case.case_id, "reason": str(exc)})
            continue
        per_volume.append((case, scores))
    if not per_volume:
        reasons = "; ".join(f"{s['case_id']}: {s['reason']}" for s in skipped[:3])
        raise VolumeError(f"no volume could be evaluated ({len(skipped)} skipped: {reasons})")
    patients = [case.patient_id for case, _ in per_volume]
    summary = {
        name: volume_summary([s[name] for _, s in per_volume], patients, n_resamples=n_resamples, seed=seed, confidence=confidence)
        for name in structures
    }
    return {
        "n_volumes": len(per_volume),
        "n_patients": len(set(patients)),
        "structures": summary,
        "volumes": [{"case_id": case.case_id, **{name: s.to_dict() for name, s in scores.items()}} for case, scores in per_volume],
        "skipped": skipped,
    }
