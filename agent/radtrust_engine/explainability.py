"""Model-agnostic saliency for a radiology classifier and how faithful it is to the model
(EU AI Act transparency evidence; FUTURE-AI explainability).

The model is a ``predict`` callable: a float32 ``(N, C, H, W)`` batch of
preprocessed tensors in, the ``(N, L)`` probabilities of its L labels out
(``(N,)`` for one label). No gradients are needed, so any exported model can
be explained.

1. Cases: one set of up to ``n_cases``, shared by the labels, drawn with
   ``numpy.random.default_rng(seed)`` (``select_cases``). The labels take
   turns, the one with the fewest positives first; on its turn a label draws
   one case not drawn yet, a positive while it has drawn no more positives
   than negatives, else a negative (a class that runs out is made up from the
   other), each from its own seeded permutation of that class. A case is
   explained for the label it was drawn for. With one label this is a
   balanced draw (up to half, rounded up, positives); with L labels each label
   draws ``n_cases / L`` (rounded up for the first in turn). Listed in
   manifest order.
2. Saliency per case, for its label: occlusion (the drop in probability when
   a patch is replaced by the image's mean) and RISE (random smooth masks
   weighted by the probability of the masked image).
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
   bootstrap percentile CI, per label over the cases drawn for it and pooled
   over all the explained cases (``ExplainedCases.pooled``). A curve supports
   the map where its CI excludes 0 and the mean difference reaches
   ``min_difference`` (0.02 of area by default). The second condition is
   needed because the model is deterministic: a model that weighs every
   pixel alike (a function of the mean intensity) still responds a little
   more to the bright lesion the maps find, and over 32 cases that consistent
   difference (under 0.01) has a CI that excludes 0, yet says nothing useful
   about the map. Below ``min_cases_to_judge`` cases there is no CI.

Forward passes: one model output holds every label, and each case is explained
for one label, so the passes per explained case do not depend on the number of
labels: the case itself, the unoccluded image and each occlusion patch, each
RISE mask, and the ``2 x (steps + 1)`` deletion and insertion steps of each
method's map and each random map.

Plain NumPy and SciPy, with Pillow and a matplotlib colour table for the
overlay (no Django, no onnxruntime: the caller wraps the model).
"""

from __future__ import annotations

import functools
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


@dataclass(frozen=True)
class ExplainSettings:
    """How the cases are drawn, explained and judged (module docstring); the report states them."""

    methods: tuple[str, ...] = METHODS
    n_cases: int = 32
    seed: int = 0
    steps: int = 20
    n_random: int = 3
    rise_masks: int = 500
    batch_size: int = 64
    confidence: float = 0.95
    n_resamples: int = 1000
    min_difference: float = 0.02

    def rise_options(self) -> dict[str, Any]:
        """The RISE mask options (``_rise_probabilities``, ``_rise_maps``): the same masks score the
        images and build the maps."""
        return {"n_masks": self.rise_masks, "cell": RISE_CELL, "p": RISE_P, "seed": self.seed, "batch_size": self.batch_size}


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
    """``(N, L)`` probabilities of every label for ``batch``, in chunks of ``batch_size``.

    Non-finite values are left for each label to refuse (``ExplainedCases.report``
    on the cases drawn for it): a NaN in one label's output must not stop the others.
    """
    parts = []
    for start in range(0, len(batch), batch_size):
        chunk = np.ascontiguousarray(batch[start : start + batch_size], dtype=np.float32)
        probs = np.asarray(predict(chunk), dtype=np.float64)
        if probs.ndim not in (1, 2) or probs.shape[0] != len(chunk):
            raise ExplainabilityError(
                f"predict returned shape {list(probs.shape)} for a batch of {len(chunk)} images; expected ({len(chunk)},) or ({len(chunk)}, labels)"
            )
        parts.append(probs.reshape(len(chunk), -1))
    return np.concatenate(parts)


def _refuse_non_finite(values: np.ndarray, where: str) -> np.ndarray:
    """``values`` as given; ``ExplainabilityError`` if the model gave NaN or infinite probabilities there."""
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ExplainabilityError(f"predict returned {bad} NaN or infinite probability(ies) {where}")
    return values


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


def _occlusion_patches(shape: tuple[int, int], patch: int, stride: int) -> tuple[int, int, list[tuple[int, int]]]:
    """The patch's height and width (clipped to the image) and the origins of the patches covering it."""
    if patch < 1 or stride < 1:
        raise ExplainabilityError("patch and stride must be at least 1")
    h, w = shape
    ph, pw = min(patch, h), min(patch, w)
    return ph, pw, [(y, x0) for y in _starts(h, ph, stride) for x0 in _starts(w, pw, stride)]


def _occlusion_drops(predict: Predict, image: np.ndarray, *, patch: int, stride: int, batch_size: int) -> np.ndarray:
    """``(patches, L)``: every label's drop in probability when each patch is replaced by the image's mean."""
    ph, pw, origins = _occlusion_patches(image.shape[-2:], patch, stride)
    fill = _channel_means(image)
    base = _predict_batched(predict, image[None], 1)[0]
    drops = []
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.repeat(image[None], len(chunk), axis=0)
        for occluded, (y, x0) in zip(batch, chunk):
            occluded[:, y : y + ph, x0 : x0 + pw] = fill
        drops.append(base - _predict_batched(predict, batch, batch_size))
    return np.concatenate(drops)


def _occlusion_map(drops: np.ndarray, shape: tuple[int, int], *, patch: int, stride: int) -> np.ndarray:
    """One label's ``(H, W)`` occlusion map from its drop per patch: averaged over the patches covering each pixel."""
    ph, pw, origins = _occlusion_patches(shape, patch, stride)
    total = np.zeros(shape)
    covered = np.zeros(shape)
    for drop, (y, x0) in zip(drops, origins):
        total[y : y + ph, x0 : x0 + pw] += drop
        covered[y : y + ph, x0 : x0 + pw] += 1
    return total / covered


def occlusion_saliency(
    predict: Predict,
    image: np.ndarray,
    *,
    patch: int = OCCLUSION_PATCH,
    stride: int = OCCLUSION_STRIDE,
    batch_size: int = 64,
) -> np.ndarray:
    """``(L, H, W)``, one map per label: the drop in probability when a ``patch`` x ``patch`` square is
    replaced by the image's mean (each channel's own), averaged over the patches covering each pixel.

    The mean, not zero, is the fill because a preprocessed tensor's zero may be
    a meaningful intensity; the mean removes the patch's content without adding
    an edge brighter or darker than the image. Positive values: the pixel
    supports the class.
    """
    x = _as_chw(image)
    drops = _refuse_non_finite(_occlusion_drops(predict, x, patch=patch, stride=stride, batch_size=batch_size), "on the occluded images")
    return np.stack([_occlusion_map(np.ascontiguousarray(column), x.shape[-2:], patch=patch, stride=stride) for column in drops.T])


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


def _rise_probabilities(predict: Predict, images: np.ndarray, *, n_masks: int, cell: int, p: float, seed: int, batch_size: int) -> np.ndarray:
    """``(images, n_masks, L)``: every label's probability of each image under each mask, where a masked
    image keeps the original where the mask is 1 and has the image's mean where it is 0. The masks are
    the same for every image, so each chunk of them is drawn once for all the images."""
    fills = [_channel_means(image) for image in images]
    chunks: list[list[np.ndarray]] = [[] for _ in images]
    for masks in _rise_masks(images.shape[-2:], n_masks=n_masks, cell=cell, p=p, seed=seed, chunk=batch_size):
        m = masks[:, None]
        for image, fill, parts in zip(images, fills, chunks):
            parts.append(_predict_batched(predict, image[None] * m + fill * (1 - m), batch_size))
    return np.stack([np.concatenate(parts) for parts in chunks])


def _rise_maps(probabilities: np.ndarray, shape: tuple[int, int], *, n_masks: int, cell: int, p: float, seed: int, batch_size: int) -> np.ndarray:
    """``(n, H, W)`` RISE maps ``sum_i P(masked_i) * mask_i / (n_masks * p)``, one per row of ``(n, n_masks)``
    probabilities (one label's, of n images; or L labels' of one image), with the masks drawn again
    chunk by chunk as ``_rise_probabilities`` drew them."""
    total = np.zeros((len(probabilities), *shape))
    start = 0
    for masks in _rise_masks(shape, n_masks=n_masks, cell=cell, p=p, seed=seed, chunk=batch_size):
        for map_, probs in zip(total, probabilities):
            map_ += np.tensordot(probs[start : start + len(masks)], masks, axes=1)
        start += len(masks)
    return total / (n_masks * p)


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
    """``(L, H, W)`` RISE maps, one per label (Petsiuk et al. 2018): ``sum_i P(masked_i) * mask_i / (n_masks * p)``.

    A masked image keeps the original where the mask is 1 and has the image's
    mean where it is 0 (the paper multiplies by the mask, i.e. fills with 0;
    the mean is used for the reason given in ``occlusion_saliency``).
    Reproducible from ``seed``.
    """
    x = _as_chw(image)
    options = {"n_masks": n_masks, "cell": cell, "p": p, "seed": seed, "batch_size": batch_size}
    probabilities = _refuse_non_finite(_rise_probabilities(predict, x[None], **options)[0], "on the masked images")
    return _rise_maps(np.ascontiguousarray(probabilities.T), x.shape[-2:], **options)


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


def _step_group(image_shape: tuple[int, ...], steps: int) -> int:
    """How many images' deletion and insertion steps are built at once, within ``_MAX_STEP_BYTES``."""
    return max(1, _MAX_STEP_BYTES // (2 * (steps + 1) * math.prod(image_shape) * 4))


def deletion_insertion(
    predict: Predict,
    images: np.ndarray,
    saliencies: np.ndarray,
    *,
    steps: int = 20,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image and label, the deletion and insertion areas under the curve, each ``(N, L)`` and in
    [0, 1] for probabilities.

    Step ``k`` of ``0..steps`` changes the ``round(k * H * W / steps)`` most
    salient pixels (ties in pixel order), in every channel: deletion puts the
    blurred copy (``blur_baseline``) there, insertion puts the original there
    on top of the blurred copy. The area is the trapezoid rule over the
    fraction changed, 0 to 1. The step images of a group of cases are built at
    once and scored in batches of ``batch_size``; every label's curve is
    integrated on its own, as if the model gave that label alone.
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
    curves = []  # per group, (L, g, 2, steps+1): each label's curves laid out as one label's alone
    group = _step_group(images.shape[1:], steps)
    for start in range(0, n, group):
        stop = min(n, start + group)
        changed = rank[start:stop, None, None, :] < counts[None, :, None, None]  # (g, steps+1, 1, HW)
        x, b = flat[start:stop, None], blurred[start:stop, None]
        deletion = np.where(changed, b, x)
        insertion = np.where(changed, x, b)
        batch = np.stack([deletion, insertion], axis=1).reshape(-1, c, h, w)
        probs = _predict_batched(predict, batch, batch_size).reshape(stop - start, 2, steps + 1, -1)
        curves.append(np.ascontiguousarray(np.moveaxis(probs, -1, 0)))  # C order: the sums run as for one label
    areas = np.trapezoid(np.concatenate(curves, axis=1), dx=1.0 / steps, axis=-1)  # (L, n, 2)
    return areas[..., 0].T, areas[..., 1].T


def _random_areas(predict: Predict, images: np.ndarray, case_rows: Sequence[int], settings: ExplainSettings) -> tuple[np.ndarray, np.ndarray]:
    """``(n, L)`` deletion and insertion areas of the random maps, each the mean over the case's
    ``n_random`` maps. The maps are built a group of step images at a time, so a run with many
    explained cases never holds them all."""
    n, _, h, w = images.shape
    maps = [(i, r) for i in range(n) for r in range(settings.n_random)]
    deletion, insertion = [], []
    group = _step_group(images.shape[1:], settings.steps)
    for start in range(0, len(maps), group):
        part = maps[start : start + group]
        random_maps = np.stack([random_saliency((h, w), (settings.seed, int(case_rows[i]), r)) for i, r in part])
        areas = deletion_insertion(predict, images[[i for i, _ in part]], random_maps, steps=settings.steps, batch_size=settings.batch_size)
        deletion.append(areas[0])
        insertion.append(areas[1])

    def mean_per_case(areas: list[np.ndarray]) -> np.ndarray:
        per_label = np.ascontiguousarray(np.concatenate(areas).T)  # (L, n * n_random)
        return per_label.reshape(len(per_label), n, settings.n_random).mean(axis=2).T

    return mean_per_case(deletion), mean_per_case(insertion)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

SELECTION = (
    "one set shared by the labels: the labels take turns (the fewest positives first), each drawing a case not drawn yet, a positive while it has drawn "
    "no more positives than negatives, else a negative (a class that runs short is made up from the other); each case is "
    "explained for the label it was drawn for; default_rng(seed); listed in manifest order"
)


def select_cases(y_true: np.ndarray, n_cases: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The cases to explain (module docstring, step 1): their positions, in manifest order, and the
    label each was drawn for. ``y_true`` is ``(N, L)``, or ``(N,)`` for one label.

    Each label's two permutations together hold every case, so the label whose
    turn it is always finds one not drawn yet: every label draws its share.
    """
    y = np.asarray(y_true)
    y = y[:, None] if y.ndim == 1 else y
    rng = np.random.default_rng(seed)
    queues = [(rng.permutation(np.flatnonzero(column == 1)), rng.permutation(np.flatnonzero(column != 1))) for column in y.T]
    cursor = np.zeros((y.shape[1], 2), dtype=int)  # per label and class (positive, negative): the next place in its queue
    drawn = np.zeros((y.shape[1], 2), dtype=int)  # per label and class: the cases drawn for it
    drawn_for = np.full(len(y), -1)
    turns = np.argsort((y == 1).sum(axis=0), kind="stable")  # the rarest label first: its few positives are not yet drawn for another
    for turn in range(min(n_cases, len(y))):
        label = turns[turn % y.shape[1]]
        first = 0 if drawn[label, 0] <= drawn[label, 1] else 1
        for cls in (first, 1 - first):
            queue = queues[label][cls]
            while cursor[label, cls] < len(queue) and drawn_for[queue[cursor[label, cls]]] >= 0:
                cursor[label, cls] += 1
            if cursor[label, cls] < len(queue):
                drawn_for[queue[cursor[label, cls]]] = label
                drawn[label, cls] += 1
                break
    positions = np.flatnonzero(drawn_for >= 0)
    return positions, drawn_for[positions]


def min_cases_to_judge(confidence: float) -> int:
    """The fewest cases whose mean difference gets a CI. With fewer, even cases whose differences all
    share a sign are more likely than ``1 - confidence`` under a map no better than random (two-sided
    sign test: ``2 * 0.5**n``), yet every bootstrap mean would share that sign and the percentile CI
    would exclude 0: it would claim more than the cases hold. 6 at 95%."""
    return math.ceil(math.log2(2 / (1 - confidence)) - 1e-9)


def _mean(values: np.ndarray) -> float | None:
    return finite_or_none(values.mean()) if len(values) else None


def _difference(diffs: np.ndarray, *, n_resamples: int, confidence: float, seed: int) -> dict[str, float | None]:
    """Mean of per-case differences with a case-level bootstrap percentile CI (None below ``min_cases_to_judge``)."""
    value = _mean(diffs)
    if len(diffs) < min_cases_to_judge(confidence) or n_resamples < 1:
        return {"value": value, "ci_low": None, "ci_high": None}
    counts = patient_bootstrap_counts(np.random.default_rng(seed), len(diffs), n_resamples)
    means = counts @ diffs / len(diffs)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return {"value": value, "ci_low": finite_or_none(low), "ci_high": finite_or_none(high)}


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


def _faithfulness(areas: dict[str, tuple[np.ndarray, np.ndarray]], settings: ExplainSettings) -> dict[str, dict[str, Any]]:
    """Per method, over the cases of ``areas`` (name -> deletion and insertion area per case, with
    "random"): its mean areas, its differences from the random maps' (paired by case) and the verdict."""
    bootstrap = {"n_resamples": settings.n_resamples, "confidence": settings.confidence, "seed": settings.seed}
    random_deletion, random_insertion = areas["random"]
    found = {}
    for method in settings.methods:
        deletion, insertion = areas[method]
        deletion_difference = _difference(deletion - random_deletion, **bootstrap)
        insertion_difference = _difference(insertion - random_insertion, **bootstrap)
        found[method] = {
            "deletion_auc": _mean(deletion),
            "insertion_auc": _mean(insertion),
            "deletion_difference": deletion_difference,
            "insertion_difference": insertion_difference,
            "verdict": faithfulness_verdict(deletion_difference, insertion_difference, settings.min_difference),
        }
    return found


def _saliency_maps(method: str, weights: np.ndarray, shape: tuple[int, int], settings: ExplainSettings) -> np.ndarray:
    """``(n, H, W)``: each case's map from its label's weights (occlusion's drop per patch, RISE's probability per mask)."""
    if method == "occlusion":
        return np.stack([_occlusion_map(case, shape, patch=OCCLUSION_PATCH, stride=OCCLUSION_STRIDE) for case in weights])
    return _rise_maps(weights, shape, **settings.rise_options())


def _first_non_finite(checks: Sequence[tuple[str, np.ndarray]], n: int) -> list[str | None]:
    """Per case, where the model first gave its label a NaN or infinite probability (None: nowhere);
    ``checks`` are (where, ``(n, ...)`` values of each case's label), in the order the model ran."""
    found: list[str | None] = [None] * n
    for where, values in checks:
        for case in np.flatnonzero(~np.isfinite(values.reshape(n, -1)).all(axis=1)):
            found[case] = found[case] or where
    return found


@dataclass
class ExplainedCases:
    """The explained cases, shared by the labels, with what ``explain_cases`` measured on each for
    the label it was drawn for: ``report(label)`` is one label's result, ``pooled`` all of them."""

    tensors: np.ndarray
    y_true: np.ndarray  # (N, L)
    rows: Sequence[int]
    image_paths: Sequence[str]
    settings: ExplainSettings
    positions: np.ndarray  # (n,) the explained cases in the kept tensors, in manifest order
    drawn_for: np.ndarray  # (n,) the label each was drawn for
    probability: np.ndarray  # (n,) each case as it is, for its label
    saliency: dict[str, np.ndarray]  # method -> (n, H, W)
    areas: dict[str, tuple[np.ndarray, np.ndarray]]  # method and "random" -> deletion and insertion area per case
    seconds: dict[str, float]  # per method and "random", over all the cases
    non_finite: list[str | None]  # per case: where the model gave its label a NaN or infinite probability

    def report(self, label: int) -> ExplainabilityResult:
        """One label's saliency and its faithfulness against the random baseline on the cases drawn
        for it (module docstring); ``ExplainabilityError`` if the model gave that label non-finite
        probabilities on them."""
        settings = self.settings
        own = np.flatnonzero(self.drawn_for == label)
        where = next((self.non_finite[i] for i in own if self.non_finite[i]), None)
        if where:
            raise ExplainabilityError(f"predict returned NaN or infinite probability(ies) {where}")
        chosen = self.positions[own]
        n, (h, w) = len(own), self.tensors.shape[-2:]
        y = self.y_true[:, label]
        areas = {name: (deletion[own], insertion[own]) for name, (deletion, insertion) in self.areas.items()}
        share = n / len(self.positions)  # each case's passes are the label's it was drawn for
        methods = _faithfulness(areas, settings)
        for method in settings.methods:
            methods[method]["seconds"] = round(self.seconds[method] * share, 3)
        n_positive = int((y[chosen] == 1).sum())
        report = {
            "n_cases": n,
            "n_requested": int(settings.n_cases),
            "n_explained": len(self.positions),
            "n_positive": n_positive,
            "n_negative": n - n_positive,
            "notes": self._notes(label, n, n_positive),
            "selection": SELECTION,
            "methods": methods,
            "random_baseline": {
                "deletion_auc": _mean(areas["random"][0]),
                "insertion_auc": _mean(areas["random"][1]),
                "maps_per_case": settings.n_random,
                "map": f"white noise blurred with sigma {max(1.0, min(h, w) * RANDOM_SIGMA_FRACTION):g} px",
                "seconds": round(self.seconds["random"] * share, 3),
            },
            "pooled": self.pooled,
            "interpretation": "differences are method minus random, averaged over cases; deletion: lower is better, "
            "insertion: higher is better; a curve counts only where its CI excludes 0 and the mean "
            f"difference is at least {settings.min_difference:g}",
            "settings": {
                "methods": list(settings.methods),
                "seed": settings.seed,
                "steps": settings.steps,
                "n_random": settings.n_random,
                "batch_size": settings.batch_size,
                "confidence": settings.confidence,
                "n_resamples": settings.n_resamples,
                "min_difference": settings.min_difference,
                "min_cases_to_judge": min_cases_to_judge(settings.confidence),
                "occlusion": {"patch": OCCLUSION_PATCH, "stride": OCCLUSION_STRIDE, "fill": "image mean"},
                "rise": {"n_masks": settings.rise_masks, "cell": RISE_CELL, "p": RISE_P, "fill": "image mean"},
                "deletion_baseline": f"gaussian blur, sigma {w * BLUR_SIGMA_FRACTION:g} px (image width / 8)",
                "image_shape": list(self.tensors.shape[1:]),
            },
            "cases": [
                {
                    "row": int(self.rows[i]) + 1,
                    "image_path": str(self.image_paths[i]),
                    "probability": finite_or_none(self.probability[k]),
                    "label": int(y[i]),
                    "deletion_auc": {name: finite_or_none(a[0][j]) for name, a in areas.items()},
                    "insertion_auc": {name: finite_or_none(a[1][j]) for name, a in areas.items()},
                }
                for j, (k, i) in enumerate(zip(own, chosen))
            ],
        }
        saliency = {method: maps[own] for method, maps in self.saliency.items()}
        return ExplainabilityResult(report=report, saliency=saliency, case_rows=[int(self.rows[i]) for i in chosen])

    @functools.cached_property
    def pooled(self) -> dict[str, Any]:
        """Faithfulness over every explained case, each on the maps of the label it was drawn for: the
        verdict the whole budget of cases gives, which one label's share of it may be too small to give."""
        n = len(self.positions)
        where = next((w for w in self.non_finite if w), None)
        if where:
            return {"n_cases": n, "error": f"not estimable: predict returned NaN or infinite probability(ies) {where} for some label"}
        return {
            "n_cases": n,
            "methods": _faithfulness(self.areas, self.settings),
            "random_baseline": {"deletion_auc": _mean(self.areas["random"][0]), "insertion_auc": _mean(self.areas["random"][1])},
        }

    def _notes(self, label: int, n: int, n_positive: int) -> list[str]:
        """What a reader of this label's figures should know about the cases behind them."""
        settings, n_explained, n_labels = self.settings, len(self.positions), self.y_true.shape[1]
        notes = []
        if n_explained < settings.n_cases:
            notes.append(f"{n_explained} case(s) available, fewer than the {settings.n_cases} asked: all were explained")
        if n_labels > 1:
            notes.append(
                f"{n} of the {n_explained} explained cases were drawn for this label (the {n_labels} labels take turns); "
                "'pooled' judges all of them, each on the maps of the label it was drawn for"
            )
        needed = min_cases_to_judge(settings.confidence)
        if n < needed:
            notes.append(f"{n} case(s) are too few to judge this label's maps alone (at least {needed}); raise explain_cases")
        y = self.y_true[:, label]
        kept = {"positive": int((y == 1).sum()), "negative": int((y != 1).sum())}
        drawn = {"positive": n_positive, "negative": n - n_positive}
        for cls, other in (("positive", "negative"), ("negative", "positive")):
            if n and not drawn[cls]:
                notes.append(f"only {other} cases were available" if not kept[cls] else f"no {cls} case among the {n} drawn for this label")
        return notes


def explain_cases(
    predict: Predict,
    tensors: np.ndarray,
    y_true: np.ndarray,
    rows: Sequence[int],
    image_paths: Sequence[str],
    settings: ExplainSettings = ExplainSettings(),
) -> ExplainedCases:
    """Draw the cases shared by the labels and measure each for the label it was drawn for (module
    docstring): every forward pass runs here, and gives every label at once. ``y_true`` is ``(N, L)``
    in the order of ``predict``'s labels (``(N,)`` for one label); ``rows`` are 0-based manifest
    rows, which the report shows 1-based. ``ExplainedCases.report(label)`` gives each label's result."""
    unknown = sorted(set(settings.methods) - set(METHODS))
    if unknown:
        raise ExplainabilityError(f"unknown saliency method(s) {unknown}; choose from {list(METHODS)}")
    tensors = np.asarray(tensors, dtype=np.float32)
    y = np.asarray(y_true)
    y = y[:, None] if y.ndim == 1 else y
    if tensors.ndim != 4:
        raise ExplainabilityError(f"expected tensors shaped (N, C, H, W), got {tensors.shape}")
    if not len(tensors) == len(y) == len(rows) == len(image_paths):
        raise ExplainabilityError(
            f"tensors, y_true, rows and image_paths differ in length ({len(tensors)}, {len(y)}, {len(rows)}, {len(image_paths)})"
        )
    if len(tensors) == 0 or settings.n_cases < 1:
        raise ExplainabilityError("no cases to explain: the run kept no tensors or n_cases is below 1")
    if settings.n_random < 1:
        raise ExplainabilityError("n_random must be at least 1")

    positions, drawn_for = select_cases(y, settings.n_cases, settings.seed)
    x = tensors[positions]
    case = np.arange(len(x))

    def own(values: np.ndarray) -> np.ndarray:
        """Each case's label's column of per-case ``(n, ..., L)`` outputs: ``(n, ...)``."""
        return np.moveaxis(values, -1, 1)[case, drawn_for]

    probability = _predict_batched(predict, x, settings.batch_size)
    if probability.shape[1] != y.shape[1]:
        raise ExplainabilityError(f"predict gives {probability.shape[1]} label(s) but y_true has {y.shape[1]}")
    checks = [("for the explained cases", own(probability))]
    saliency: dict[str, np.ndarray] = {}
    areas: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for method in settings.methods:
        started = time.perf_counter()
        if method == "occlusion":
            options = {"patch": OCCLUSION_PATCH, "stride": OCCLUSION_STRIDE, "batch_size": settings.batch_size}
            weights = own(np.stack([_occlusion_drops(predict, image, **options) for image in x]))
        else:
            weights = own(_rise_probabilities(predict, x, **settings.rise_options()))
        checks.append((f"on the explained cases' {method} inputs", weights))
        saliency[method] = _saliency_maps(method, weights, x.shape[-2:], settings)
        curves = deletion_insertion(predict, x, saliency[method], steps=settings.steps, batch_size=settings.batch_size)
        areas[method] = (own(curves[0]), own(curves[1]))
        checks.append((f"on the deletion and insertion steps of the {method} maps", np.stack(areas[method], axis=1)))
        seconds[method] = time.perf_counter() - started
    started = time.perf_counter()
    random_curves = _random_areas(predict, x, [rows[i] for i in positions], settings)
    areas["random"] = (own(random_curves[0]), own(random_curves[1]))
    checks.append(("on the random maps' deletion and insertion steps", np.stack(areas["random"], axis=1)))
    seconds["random"] = time.perf_counter() - started
    non_finite = _first_non_finite(checks, len(x))
    return ExplainedCases(tensors, y, rows, image_paths, settings, positions, drawn_for, own(probability), saliency, areas, seconds, non_finite)


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
