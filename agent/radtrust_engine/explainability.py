"""Model-agnostic saliency for a radiology classifier and how faithful it is to the model
(EU AI Act transparency evidence; FUTURE-AI explainability).

The model is a ``predict`` callable: a float32 ``(N, C, H, W)`` batch of
preprocessed tensors in, ``(N,)`` probabilities of the explained class out.
No gradients are needed, so any exported model can be explained.

1. Cases: up to ``n_cases`` are drawn with ``numpy.random.default_rng(seed)``,
   balanced between the classes (up to half, rounded up, from the positives;
   the rest from the negatives; a class that runs short is made up from the
   other) and listed in manifest order.
2. Saliency per case: occlusion (the drop in probability when a patch is
   replaced by the image's mean) and RISE (random smooth masks weighted by the
   probability of the masked image).
3. Faithfulness (Petsiuk et al. 2018): the deletion curve removes the most
   salient pixels first, replacing them by a blurred copy of the image, and
   the insertion curve starts from that blurred copy and puts the most
   salient pixels back first; each curve is the probability over the fraction
   of pixels changed, summarised by its area (trapezoid on ``[0, 1]``). A
   faithful map gives a low deletion and a high insertion area.
4. Baseline: the same curves for ``n_random`` smooth random maps per case.
   An area is only evidence next to what an uninformed map of the same
   smoothness scores on the same image and model.
5. Differences (method minus random) per case, averaged, with a case-level
   bootstrap percentile CI. A curve supports the map where its CI excludes 0
   and the mean difference reaches ``min_difference`` (0.02 of area by
   default). The second condition is needed because the model is
   deterministic: a model that weighs every pixel alike (a function of the
   mean intensity) still responds a little more to the bright lesion the
   maps find, and over 32 cases that consistent difference (under 0.01) has
   a CI that excludes 0, yet says nothing useful about the map.

Plain NumPy and SciPy, with Pillow and a matplotlib colour table for the
overlay (no Django, no onnxruntime: the caller wraps the model).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image
from scipy.ndimage import gaussian_filter

from radtrust_engine.metrics import finite_or_none, patient_bootstrap_counts

Predict = Callable[[np.ndarray], np.ndarray]

METHODS: tuple[str, ...] = ("occlusion", "rise")
BLUR_SIGMA_FRACTION = 1 / 8  # deletion/insertion baseline blur, as a fraction of the image width
RANDOM_SIGMA_FRACTION = 1 / 16  # smoothness of the random baseline maps, as a fraction of the image width
RISE_CELL = 8
RISE_P = 0.5
OCCLUSION_PATCH = 8
OCCLUSION_STRIDE = 4
_MAX_STEP_BYTES = 64 * 2**20  # memory for the step images of one group of cases


class ExplainabilityError(ValueError):
    """Inputs or model outputs that cannot be explained; the caller records the message."""


@dataclass
class ExplainabilityResult:
    """The JSON-safe report, the saliency maps (method -> ``(n, H, W)``) and the 0-based
    manifest rows of the explained cases, in the order of the maps."""

    report: dict[str, Any]
    saliency: dict[str, np.ndarray]
    case_rows: list[int]

    def to_dict(self) -> dict[str, Any]:
        return self.report


# ---------------------------------------------------------------------------
# Model calls
# ---------------------------------------------------------------------------


def _predict_batched(predict: Predict, batch: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities for ``batch`` in chunks of ``batch_size``; refuses missing or non-finite outputs."""
    out = np.empty(len(batch))
    for start in range(0, len(batch), batch_size):
        chunk = np.ascontiguousarray(batch[start : start + batch_size], dtype=np.float32)
        probs = np.asarray(predict(chunk), dtype=np.float64).reshape(-1)
        if probs.size != len(chunk):
            raise ExplainabilityError(f"predict returned {probs.size} value(s) for a batch of {len(chunk)} images")
        bad = int((~np.isfinite(probs)).sum())
        if bad:
            raise ExplainabilityError(f"predict returned {bad} NaN or infinite probability(ies) in a batch of {len(chunk)} images")
        out[start : start + len(chunk)] = probs
    return out


def _as_chw(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image[None]
    if image.ndim != 3:
        raise ExplainabilityError(f"expected an image shaped (C, H, W) or (H, W), got {image.shape}")
    return image


def _channel_means(image: np.ndarray) -> np.ndarray:
    return image.mean(axis=(-2, -1), keepdims=True)


# ---------------------------------------------------------------------------
# Saliency
# ---------------------------------------------------------------------------


def _starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Patch origins every ``stride`` pixels, plus one flush with the far edge so every pixel is covered."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return np.asarray(starts)


def occlusion_saliency(
    predict: Predict,
    image: np.ndarray,
    *,
    patch: int = OCCLUSION_PATCH,
    stride: int = OCCLUSION_STRIDE,
    batch_size: int = 64,
) -> np.ndarray:
    """``(H, W)`` map: the drop in probability when a ``patch`` x ``patch`` square is replaced by the
    image's mean (each channel's own), averaged over the patches covering each pixel.

    The mean, not zero, is the fill because a preprocessed tensor's zero may be
    a meaningful intensity; the mean removes the patch's content without adding
    an edge brighter or darker than the image. Positive values: the pixel
    supports the class.
    """
    if patch < 1 or stride < 1:
        raise ExplainabilityError("patch and stride must be at least 1")
    x = _as_chw(image)
    _, h, w = x.shape
    ph, pw = min(patch, h), min(patch, w)
    origins = [(y, x0) for y in _starts(h, ph, stride) for x0 in _starts(w, pw, stride)]
    fill = _channel_means(x)
    base = _predict_batched(predict, x[None], 1)[0]
    total = np.zeros((h, w))
    covered = np.zeros((h, w))
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for occluded, (y, x0) in zip(batch, chunk):
            occluded[:, y : y + ph, x0 : x0 + pw] = fill
        drops = base - _predict_batched(predict, batch, batch_size)
        for drop, (y, x0) in zip(drops, chunk):
            total[y : y + ph, x0 : x0 + pw] += drop
            covered[y : y + ph, x0 : x0 + pw] += 1
    return total / covered


def _bilinear_matrices(size: int, cells: int, cell: int) -> np.ndarray:
    """``(cell, size, cells + 1)``: for each shift, the bilinear weights that upsample a ``cells + 1``
    grid by ``cell`` (pixel-centre aligned, edges clamped) and crop ``size`` pixels from that shift."""
    out = np.zeros((cell, size, cells + 1))
    u = np.arange(size)
    for shift in range(cell):
        t = np.clip((u + shift + 0.5) / cell - 0.5, 0, cells)
        i0 = np.floor(t).astype(int)
        i1 = np.minimum(i0 + 1, cells)
        frac = t - i0
        np.add.at(out[shift], (u, i0), 1 - frac)
        np.add.at(out[shift], (u, i1), frac)
    return out


def _rise_masks(
    shape: tuple[int, int],
    *,
    n_masks: int,
    cell: int,
    p: float,
    seed: int,
    chunk: int,
) -> Iterator[np.ndarray]:
    """RISE masks in [0, 1], ``chunk`` at a time as ``(chunk, H, W)``: binary grids of
    ``ceil(H / cell) + 1`` x ``ceil(W / cell) + 1`` cells kept with probability ``p``, upsampled
    bilinearly by ``cell`` and cropped at a random shift of 0..cell-1 pixels on each axis. All draws
    come from ``seed`` up front, so the masks do not depend on ``chunk``."""
    if n_masks < 1 or cell < 1 or not 0 < p <= 1:
        raise ExplainabilityError("RISE needs n_masks >= 1, cell >= 1 and 0 < p <= 1")
    h, w = shape
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    rng = np.random.default_rng(seed)
    grids = (rng.random((n_masks, gh + 1, gw + 1)) < p).astype(np.float64)
    shifts = rng.integers(0, cell, size=(n_masks, 2))
    ry, rx = _bilinear_matrices(h, gh, cell), _bilinear_matrices(w, gw, cell)
    for start in range(0, n_masks, chunk):
        part = slice(start, start + chunk)
        yield (ry[shifts[part, 0]] @ grids[part] @ rx[shifts[part, 1]].transpose(0, 2, 1)).astype(np.float32)


def rise_saliency(
    predict: Predict,
    image: np.ndarray,
    *,
    n_masks: int = 500,
    cell: int = RISE_CELL,
    p: float = RISE_P,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """``(H, W)`` RISE map (Petsiuk et al. 2018): ``sum_i P(masked_i) * mask_i / (n_masks * p)``.

    A masked image keeps the original where the mask is 1 and has the image's
    mean where it is 0 (the paper multiplies by the mask, i.e. fills with 0;
    the mean is used for the reason given in ``occlusion_saliency``).
    Reproducible from ``seed``.
    """
    x = _as_chw(image)
    fill = _channel_means(x)
    total = np.zeros(x.shape[-2:])
    for masks in _rise_masks(x.shape[-2:], n_masks=n_masks, cell=cell, p=p, seed=seed, chunk=batch_size):
        m = masks[:, None]
        probs = _predict_batched(predict, x[None] * m + fill * (1 - m), batch_size)
        total += np.tensordot(probs, masks, axes=1)
    return total / (n_masks * p)


def random_saliency(shape: tuple[int, int], seed: int | Sequence[int]) -> np.ndarray:
    """A smooth random ``(H, W)`` map: white noise blurred with sigma ``min(H, W) / 16`` pixels.

    Occlusion and RISE maps are smooth at the scale of a patch or a cell, so
    deleting by them removes contiguous regions. Deleting by white noise would
    remove scattered pixels, which changes a model differently whatever their
    meaning; a baseline of the same smoothness isolates where the map points.
    """
    h, w = shape
    noise = np.random.default_rng(seed).standard_normal((h, w))
    return gaussian_filter(noise, sigma=max(1.0, min(h, w) * RANDOM_SIGMA_FRACTION), mode="reflect")


# ---------------------------------------------------------------------------
# Faithfulness
# ---------------------------------------------------------------------------


def blur_baseline(images: np.ndarray) -> np.ndarray:
    """The images blurred per channel with a gaussian of sigma ``W / 8`` pixels (reflected edges): it
    removes a lesion's detail yet keeps the image's overall intensity, so the model sees a plausible
    image rather than a black hole."""
    sigma = images.shape[-1] * BLUR_SIGMA_FRACTION
    return gaussian_filter(images, sigma=(0, 0, sigma, sigma), mode="reflect")


def deletion_insertion(
    predict: Predict,
    images: np.ndarray,
    saliencies: np.ndarray,
    *,
    steps: int = 20,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the deletion and insertion areas under the curve (each in [0, 1] for probabilities).

    Step ``k`` of ``0..steps`` changes the ``round(k * H * W / steps)`` most
    salient pixels (ties in pixel order), in every channel: deletion puts the
    blurred copy (``blur_baseline``) there, insertion puts the original there
    on top of the blurred copy. The area is the trapezoid rule over the
    fraction changed, 0 to 1. The step images of a group of cases are built at
    once and scored in batches of ``batch_size``.
    """
    images = np.asarray(images, dtype=np.float32)
    saliencies = np.asarray(saliencies, dtype=np.float64)
    if images.ndim != 4 or saliencies.shape != (images.shape[0], *images.shape[2:]):
        raise ExplainabilityError(f"expected images (N, C, H, W) and saliencies (N, H, W), got {images.shape} and {saliencies.shape}")
    if steps < 1:
        raise ExplainabilityError("steps must be at least 1")
    n, c, h, w = images.shape
    counts = np.rint(np.arange(steps + 1) * (h * w) / steps).astype(int)
    order = np.argsort(-saliencies.reshape(n, -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None], axis=1)
    flat = images.reshape(n, c, h * w)
    blurred = blur_baseline(images).reshape(n, c, h * w)
    curves = np.empty((n, 2, steps + 1))
    group = max(1, _MAX_STEP_BYTES // (2 * (steps + 1) * c * h * w * 4))
    for start in range(0, n, group):
        stop = min(n, start + group)
        changed = rank[start:stop, None, None, :] < counts[None, :, None, None]  # (g, steps+1, 1, HW)
        x, b = flat[start:stop, None], blurred[start:stop, None]
        deletion = np.where(changed, b, x)
        insertion = np.where(changed, x, b)
        batch = np.stack([deletion, insertion], axis=1).reshape(-1, c, h, w)
        curves[start:stop] = _predict_batched(predict, batch, batch_size).reshape(stop - start, 2, steps + 1)
    areas = np.trapezoid(curves, dx=1.0 / steps, axis=-1)
    return areas[:, 0], areas[:, 1]


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def select_cases(y_true: np.ndarray, n_cases: int, seed: int) -> np.ndarray:
    """Positions of the cases to explain (module docstring, step 1)."""
    rng = np.random.default_rng(seed)
    positive = rng.permutation(np.flatnonzero(y_true == 1))
    negative = rng.permutation(np.flatnonzero(y_true != 1))
    n_pos = min(len(positive), math.ceil(n_cases / 2))
    n_neg = min(len(negative), n_cases - n_pos)
    n_pos = min(len(positive), n_cases - n_neg)
    return np.sort(np.concatenate([positive[:n_pos], negative[:n_neg]]))


def _difference(diffs: np.ndarray, *, n_resamples: int, confidence: float, seed: int) -> dict[str, float | None]:
    """Mean of per-case differences with a case-level bootstrap percentile CI (None below two cases)."""
    value = float(diffs.mean())
    if len(diffs) < 2 or n_resamples < 1:
        return {"value": finite_or_none(value), "ci_low": None, "ci_high": None}
    counts = patient_bootstrap_counts(np.random.default_rng(seed), len(diffs), n_resamples)
    means = counts @ diffs / len(diffs)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return {"value": finite_or_none(value), "ci_low": finite_or_none(low), "ci_high": finite_or_none(high)}


def faithfulness_verdict(deletion: dict[str, float | None], insertion: dict[str, float | None], min_difference: float) -> str:
    """Deletion differences should be negative, insertion differences positive. A curve counts only
    where its CI excludes 0 and its mean difference is at least ``min_difference``: a deterministic
    model gives consistent, hence significant, differences too small to matter (module docstring)."""
    if deletion["ci_low"] is None or insertion["ci_low"] is None:
        return "too few cases to judge"
    big = {"deletion": abs(deletion["value"]) >= min_difference, "insertion": abs(insertion["value"]) >= min_difference}
    better = {"deletion": big["deletion"] and deletion["ci_high"] < 0, "insertion": big["insertion"] and insertion["ci_low"] > 0}
    worse = {"deletion": big["deletion"] and deletion["ci_low"] > 0, "insertion": big["insertion"] and insertion["ci_high"] < 0}
    if all(better.values()):
        return "beats random"
    if any(better.values()) and any(worse.values()):
        return "mixed: better than random on one curve, worse on the other"
    if any(better.values()):
        return f"beats random on {next(k for k, v in better.items() if v)} only"
    if any(worse.values()):
        return "worse than random"
    return "not distinguishable from random"


def explainability_report(
    predict: Predict,
    tensors: np.ndarray,
    y_true: np.ndarray,
    rows: Sequence[int],
    image_paths: Sequence[str],
    *,
    methods: Sequence[str] = METHODS,
    n_cases: int = 32,
    seed: int = 0,
    steps: int = 20,
    n_random: int = 3,
    rise_masks: int = 500,
    batch_size: int = 64,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    min_difference: float = 0.02,
) -> ExplainabilityResult:
    """Saliency and its faithfulness against a random baseline for a sample of the run's cases
    (see the module docstring). ``rows`` are 0-based manifest rows; the report shows them 1-based."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ExplainabilityError(f"unknown saliency method(s) {unknown}; choose from {list(METHODS)}")
    tensors = np.asarray(tensors, dtype=np.float32)
    y = np.asarray(y_true)
    if tensors.ndim != 4:
        raise ExplainabilityError(f"expected tensors shaped (N, C, H, W), got {tensors.shape}")
    if not len(tensors) == len(y) == len(rows) == len(image_paths):
        raise ExplainabilityError(
            f"tensors, y_true, rows and image_paths differ in length ({len(tensors)}, {len(y)}, {len(rows)}, {len(image_paths)})"
        )
    if len(tensors) == 0 or n_cases < 1:
        raise ExplainabilityError("no cases to explain: the run kept no tensors or n_cases is below 1")
    if n_random < 1:
        raise ExplainabilityError("n_random must be at least 1")

    chosen = select_cases(y, n_cases, seed)
    x = tensors[chosen]
    n, _, h, w = x.shape
    probability = _predict_batched(predict, x, batch_size)

    saliency: dict[str, np.ndarray] = {}
    areas: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for method in methods:
        started = time.perf_counter()
        if method == "occlusion":
            maps = [occlusion_saliency(predict, image, batch_size=batch_size) for image in x]
        else:
            maps = [rise_saliency(predict, image, n_masks=rise_masks, seed=seed, batch_size=batch_size) for image in x]
        saliency[method] = np.stack(maps)
        areas[method] = deletion_insertion(predict, x, saliency[method], steps=steps, batch_size=batch_size)
        seconds[method] = time.perf_counter() - started

    started = time.perf_counter()
    random_maps = np.stack([random_saliency((h, w), (seed, int(rows[i]), r)) for i in chosen for r in range(n_random)])
    random_del, random_ins = deletion_insertion(predict, np.repeat(x, n_random, axis=0), random_maps, steps=steps, batch_size=batch_size)
    areas["random"] = (random_del.reshape(n, n_random).mean(axis=1), random_ins.reshape(n, n_random).mean(axis=1))
    seconds["random"] = time.perf_counter() - started

    method_reports: dict[str, Any] = {}
    for method in methods:
        deletion = _difference(areas[method][0] - areas["random"][0], n_resamples=n_resamples, confidence=confidence, seed=seed)
        insertion = _difference(areas[method][1] - areas["random"][1], n_resamples=n_resamples, confidence=confidence, seed=seed)
        method_reports[method] = {
            "deletion_auc": finite_or_none(areas[method][0].mean()),
            "insertion_auc": finite_or_none(areas[method][1].mean()),
            "deletion_difference": deletion,
            "insertion_difference": insertion,
            "verdict": faithfulness_verdict(deletion, insertion, min_difference),
            "seconds": round(seconds[method], 3),
        }
    n_positive = int((y[chosen] == 1).sum())
    notes = []
    if n < n_cases:
        notes.append(f"{n} case(s) available, fewer than the {n_cases} asked: all were explained")
    if n_positive in (0, n):
        notes.append(f"only {'positive' if n_positive else 'negative'} cases were available")
    report = {
        "n_cases": n,
        "n_requested": int(n_cases),
        "n_positive": n_positive,
        "n_negative": n - n_positive,
        "notes": notes,
        "selection": "balanced: up to half the cases (rounded up) drawn from the positives and the rest from the "
        "negatives, a short class made up from the other; default_rng(seed); listed in manifest order",
        "methods": method_reports,
        "random_baseline": {
            "deletion_auc": finite_or_none(areas["random"][0].mean()),
            "insertion_auc": finite_or_none(areas["random"][1].mean()),
            "maps_per_case": n_random,
            "map": f"white noise blurred with sigma {max(1.0, min(h, w) * RANDOM_SIGMA_FRACTION):g} px",
            "seconds": round(seconds["random"], 3),
        },
        "interpretation": "differences are method minus random, averaged over cases; deletion: lower is better, "
        "insertion: higher is better; a curve counts only where its CI excludes 0 and the mean "
        f"difference is at least {min_difference:g}",
        "settings": {
            "methods": list(methods),
            "seed": seed,
            "steps": steps,
            "n_random": n_random,
            "batch_size": batch_size,
            "confidence": confidence,
            "n_resamples": n_resamples,
            "min_difference": min_difference,
            "occlusion": {"patch": OCCLUSION_PATCH, "stride": OCCLUSION_STRIDE, "fill": "image mean"},
            "rise": {"n_masks": rise_masks, "cell": RISE_CELL, "p": RISE_P, "fill": "image mean"},
            "deletion_baseline": f"gaussian blur, sigma {w * BLUR_SIGMA_FRACTION:g} px (image width / 8)",
            "image_shape": list(x.shape[1:]),
        },
        "cases": [
            {
                "row": int(rows[i]) + 1,
                "image_path": str(image_paths[i]),
                "probability": finite_or_none(probability[k]),
                "label": int(y[i]),
                "deletion_auc": {name: finite_or_none(a[0][k]) for name, a in areas.items()},
                "insertion_auc": {name: finite_or_none(a[1][k]) for name, a in areas.items()},
            }
            for k, i in enumerate(chosen)
        ],
    }
    return ExplainabilityResult(report=report, saliency=saliency, case_rows=[int(rows[i]) for i in chosen])


# ---------------------------------------------------------------------------
# Overlay
# ---------------------------------------------------------------------------


def overlay_png(image: np.ndarray, saliency: np.ndarray, *, alpha: float = 0.45) -> bytes:
    """PNG of the grayscale image (min-max scaled; first channel of a ``(C, H, W)`` array) with the
    saliency (negatives clipped, scaled to [0, 1]) in matplotlib's perceptual ``inferno`` colours
    blended on top with weight ``alpha``. Same input, same bytes."""
    gray = np.asarray(image, dtype=np.float64)
    gray = gray[0] if gray.ndim == 3 else gray
    sal = np.clip(np.asarray(saliency, dtype=np.float64), 0, None)
    if gray.ndim != 2 or sal.shape != gray.shape:
        raise ExplainabilityError(f"image {np.shape(image)} and saliency {np.shape(saliency)} do not match")
    if not (np.isfinite(gray).all() and np.isfinite(sal).all()):
        raise ExplainabilityError("image or saliency holds NaN or infinite values")
    span = gray.max() - gray.min()
    gray = (gray - gray.min()) / span if span > 0 else np.zeros_like(gray)
    sal = sal / sal.max() if sal.max() > 0 else sal
    lut = colormaps["inferno"](np.linspace(0, 1, 256))[:, :3]
    colour = lut[np.rint(sal * 255).astype(int)]
    blended = (1 - alpha) * gray[..., None] + alpha * colour
    buffer = io.BytesIO()
    Image.fromarray(np.rint(blended * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
